# MicroPython script (unix port): validate board files with the firmware's own boardconf.
# Usage: micropython board_check.py FILE...   Exit 0 when every file is valid, 1 otherwise.
import sys

import boardconf

failed = 0
for path in sys.argv[1:]:
    try:
        cfg = boardconf.load(path)
        print("%s: ok (%s, %s at %d Hz, config id %d)" % (path, cfg["platform"], cfg["sensor"]["model"],
                                                          boardconf.output_rate(cfg), cfg["config_id"]))
    except boardconf.BoardError as e:
        failed += 1
        print(str(e), file=sys.stderr)
sys.exit(1 if failed else 0)
