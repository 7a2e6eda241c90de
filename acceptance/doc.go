// Package acceptance holds the end-to-end suite: a real Vault server, the
// plugin binary and the Gradient emulator, driven through the `vault` CLI the
// way users meet the plugin.
//
// Everything that starts Vault carries the build tag "acceptance", so
// `go test ./...` skips it and runs only the checks that need no Vault:
// docs/policies.md links every example policy the suite loads, and the secret
// scanner finds what it must. Run the whole suite with `make test-acceptance`
// (or `make test`), which builds the plugin, gets a Vault binary and sets the
// environment the suite needs:
//
//	VAULT_BIN                the vault binary (scripts/get-vault.sh prints it)
//	GRADIENT_PLUGIN_DIR      directory holding vault-plugin-secrets-gradient, a test
//	                         build (-tags gradienttest, `make build-test`) that
//	                         reads the GRADIENT_TEST_* tuning the suite passes
//	GRADIENT_PLUGIN_VERSION  the version the plugin was built with (default v0.1.0)
//
// Every Vault server and emulator is started on a free 127.0.0.1 port and
// stopped when the suite ends, also when a test fails.
package acceptance
