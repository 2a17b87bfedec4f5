/*
 * helper.h: roles of berth-helper that live in other source files.
 *
 * main.c dispatches on argv[1]; roles implemented elsewhere are declared
 * here. They are weak symbols so the helper still links (and says so
 * clearly at run time) when a role's source file is not part of the build.
 */
#ifndef BERTH_HELPER_H
#define BERTH_HELPER_H

/* "berth-helper fsops ...": filesystem operations for image unpacking
 * (agent/sys/native/fsops.c). argv[0] is "fsops". */
int berth_fsops_main(int argc, char **argv) __attribute__((weak));

#endif
