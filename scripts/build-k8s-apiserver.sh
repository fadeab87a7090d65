#!/usr/bin/env bash
# Build a real kube-apiserver (and get etcd) for `make k8s-apiserver-test` (opt-in).
#   etcd:           Debian package etcd-server (3.4.23), installed with apt-get when missing
#   kube-apiserver: k8s.io/kubernetes/cmd/kube-apiserver at $KUBERNETES_VERSION, built through the
#                   Go module proxy. k8s.io/kubernetes replaces its staging modules with local
#                   paths (./staging/...), which `go install pkg@version` refuses; a throwaway
#                   module in .cache/ requires it and points each staging module at its published
#                   v0.x twin instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.cache/bin"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.34.4}"
STAGING_VERSION="v0.${KUBERNETES_VERSION#v1.}"
mkdir -p "$BIN"

if ! command -v etcd >/dev/null; then
  echo "k8s-apiserver: apt-get install etcd-server" >&2
  SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  # the package starts a system etcd on :2379; the test runs its own on free ports
  ($SUDO systemctl disable --now etcd || $SUDO service etcd stop) >/dev/null 2>&1 || true
fi

if [[ -x "$BIN/kube-apiserver" && "$(cat "$BIN/.kube-apiserver.version" 2>/dev/null)" == "$KUBERNETES_VERSION" ]]; then
  exit 0
fi
echo "k8s-apiserver: building kube-apiserver $KUBERNETES_VERSION (several minutes on 2 cores)" >&2
MOD="$ROOT/.cache/kube-apiserver-build"
rm -rf "$MOD" && mkdir -p "$MOD"
moddir="$("$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
{
  echo "module movierec.local/kube-apiserver-build"
  echo
  echo "go $(sed -n 's/^go //p' "$moddir/go.mod")"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$STAGING_VERSION"'#p' "$moddir/go.mod"
} > "$MOD/go.mod"
cat > "$MOD/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
(cd "$MOD" && GOFLAGS=-mod=mod "$GO" mod tidy >/dev/null 2>&1 || true
 cd "$MOD" && GOFLAGS=-mod=mod "$GO" build -trimpath -ldflags "-s -w \
   -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
   -X k8s.io/component-base/version.gitMajor=1 \
   -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)" \
   -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
echo "$KUBERNETES_VERSION" > "$BIN/.kube-apiserver.version"
"$BIN/kube-apiserver" --version >&2
