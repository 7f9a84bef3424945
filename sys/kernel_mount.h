#pragma once
// The C library's <sys/mount.h> (mount(2), umount2, fsopen, fsconfig, fsmount, move_mount).
// Strata's own sys/mount.h shadows it: the project root is an include directory, so
// `#include <sys/mount.h>` finds ours. CMake locates the system header and passes its full path.

#ifndef STRATA_SYSTEM_SYS_MOUNT_H
#error "STRATA_SYSTEM_SYS_MOUNT_H is set by sys/CMakeLists.txt; link strata_sys"
#endif
#include STRATA_SYSTEM_SYS_MOUNT_H
