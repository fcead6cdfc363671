"""`kubetune simulate`: the real controller on a virtual clock with learning-curve benchmarks."""
