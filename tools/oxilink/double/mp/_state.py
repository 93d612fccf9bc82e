# What the launcher told this run of the board double (a JSON file named by $OXILINK_BOARD_RUN): reset cause,
# REPL mode, platform, wiring, sensor, flash image. Read once, before the flash is mounted over the host's files.
import json
import os

with open(os.getenv("OXILINK_BOARD_RUN")) as _f:
    run = json.load(_f)
