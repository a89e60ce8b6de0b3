//go:build tools

// Package tools pins the build tools kubestream's tests run (helm), in a
// module of their own so the product's go.mod does not carry their
// dependencies. hack/build-helm.sh installs them into the cache.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
