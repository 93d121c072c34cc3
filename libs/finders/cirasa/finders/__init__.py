"""What jobs are: app specs and registry, runnable finders, catalogues, simulation, compare and merge."""
