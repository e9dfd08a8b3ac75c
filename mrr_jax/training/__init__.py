"""Stage-1 / stage-2 training: configs, losses, the jitted step, the loop."""
