"""``python -m cluster``: the local single-node Kubernetes cluster (see docs/cluster.md)."""

from __future__ import annotations

import argparse
import os
import sys

from cluster.layout import PATHS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cluster",
        description="A real single-node Kubernetes on this machine: etcd, the control plane, "
                    "containerd, kubelet, kube-proxy and CoreDNS in a network namespace of their "
                    "own. Needs root.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("up", help="build what is missing and start the cluster (idempotent)")
    sub.add_parser("down", help="stop everything; no process, mount, netns or rule is left")
    sub.add_parser("reset", help="down, then delete the cluster's state (builds are kept)")
    sub.add_parser("status", help="the node supervisor and every pod")
    sub.add_parser("build", help="only build the binaries and the system images")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig's path")
    vol = sub.add_parser("volumes", help="make the hostPath directories a release's local "
                                         "PersistentVolumes use (owned by the pods' UID)")
    vol.add_argument("namespace")
    vol.add_argument("names", nargs="+", help="volume names (data, kafka, ...)")
    vol.add_argument("--uid", type=int, default=10001)
    smoke = sub.add_parser("smoke", help="the project's image on the cluster: DNS, Service, "
                                         "NodePort, logs, exec under the restricted policy")
    smoke.add_argument("--keep", action="store_true", help="leave the smoke namespace in place")
    images = sub.add_parser("images", help="build the images of docker/ with buildah and import "
                                           "them into the node (incremental)")
    images.add_argument("components", nargs="*", help="only these (default: every Dockerfile)")
    images.add_argument("--no-import", action="store_true",
                        help="build and check only; do not import into the cluster")
    sub.add_parser("node", help="(internal) run the node's processes in the foreground; "
                                "`up` starts it inside the node's network namespace")
    args = parser.parse_args(argv)

    from cluster import lifecycle
    if args.command == "up":
        lifecycle.up()
    elif args.command == "down":
        lifecycle.down()
    elif args.command == "reset":
        lifecycle.reset()
    elif args.command == "status":
        return lifecycle.status()
    elif args.command == "build":
        from cluster import gobuild, system_images
        gobuild.build(gobuild.KUBERNETES)
        system_images.archives()
    elif args.command == "images":
        from cluster import images as images_mod
        images_mod.build_all(args.components or None, import_=not args.no_import)
    elif args.command == "smoke":
        from cluster import smoke as smoke_mod
        smoke_mod.run(keep=args.keep)
    elif args.command == "volumes":
        for name in args.names:
            path = PATHS.volumes / args.namespace / name
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, args.uid, args.uid)
            path.chmod(0o750)
            print(path)
    elif args.command == "kubeconfig":
        print(PATHS.admin_kubeconfig)
    elif args.command == "node":
        if not os.path.exists(PATHS.netns_file):
            print("cluster node: the node's network namespace does not exist; use `up`",
                  file=sys.stderr)
            return 2
        from cluster import node
        node.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
