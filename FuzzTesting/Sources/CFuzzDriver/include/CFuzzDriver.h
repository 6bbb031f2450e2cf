// Starts libFuzzer from a harness's entry point (SwiftPM links each executable with
// `--defsym main=<module>_main`, so the harness defines that symbol and calls this).
#pragma once

/// Runs libFuzzer (LLVMFuzzerRunDriver) on the harness's LLVMFuzzerTestOneInput; returns its exit code.
int skw_fuzz_run(int argc, char **argv);
