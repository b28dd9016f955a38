"""Weight-space analyses: unit permutations and matching, linear mode connectivity,
and Brown et al.'s rotation (privileged-basis) test. Works on mlp and cnn."""
