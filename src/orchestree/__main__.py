from orchestree.cli import main

raise SystemExit(main())
