"""A real single-node Kubernetes cluster on this machine, built from sources and Debian packages.

``python -m cluster up`` (``make cluster-up``) builds what is missing and starts etcd, the control
plane, containerd, the kubelet, kube-proxy and CoreDNS inside a network namespace of their own;
``python -m cluster down`` removes every process, mount, namespace, link and iptables rule it made.
See docs/cluster.md.
"""
