"""The `ct-insider` command line: starts workflows, workers, emulators and the dev stack."""
