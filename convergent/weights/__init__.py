"""Weight-space analyses: unit permutations and matching (every architecture; one
permutation per residual stream in ResNets), linear mode connectivity with BatchNorm
reset and REPAIR, and Brown et al.'s rotation (privileged-basis) test (every architecture)."""
