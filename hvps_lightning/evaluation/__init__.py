"""Track -> fuse -> score: the one evaluation path of the callback, the sweeps and the CLI."""
