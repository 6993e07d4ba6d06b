// Package ci holds the tests of what egwct ships for CI systems outside Go:
// the release installer (hack/install-release.sh), the GitHub Action
// (action.yml) and the pre-commit hooks (.pre-commit-hooks.yaml).
package ci
