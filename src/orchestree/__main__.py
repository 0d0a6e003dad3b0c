from orchestree.cli import main

# The guard matters: a Dask LocalCluster starts its workers with multiprocessing's
# "spawn", which imports this module again in every worker process.
if __name__ == "__main__":
    raise SystemExit(main())
