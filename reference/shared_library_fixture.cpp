// A library the loader cannot find by name alone, for shared_library_test.
extern "C" int pipeproof_fixture_answer() { return 42; }
