"""python -m lab up|down|status|image"""

from __future__ import annotations

import argparse
import json
import sys

from lab import lab
from lab.debian_image import ensure_debian_image
from lab.hypervisor_root import ensure_hypervisor_root
from lab.image import ensure_image


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description="The arctictern.virt lab on one machine.")
    parser.add_argument("action", choices=("up", "down", "status", "image"))
    args = parser.parse_args(argv)
    if args.action == "up":
        lab.up()
    elif args.action == "down":
        lab.down()
    elif args.action == "image":
        # Everything up builds once and caches: the guest image, the Debian guests' image, the next generation's root.
        print(ensure_image())
        print(ensure_debian_image())
        print(ensure_hypervisor_root().path)
    else:
        state = lab.read_state()
        print(json.dumps(state, indent=2) if state else "lab is down")
        return 0 if state else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
