/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The bus contract shared by snapshotd and snapshotctl: names, paths, flag values.
 * Everything here is fixed by DESIGN.md; change it there first. */
#pragma once

#define SNAPSHOT_BUS_NAME               "org.example.Snapshot1"
#define SNAPSHOT_ROOT_PATH              "/org/example/Snapshot1"
#define SNAPSHOT_DOMAIN_PREFIX          "/org/example/Snapshot1/domain"
#define SNAPSHOT_IFACE_MANAGER          "org.example.Snapshot1.Manager"
#define SNAPSHOT_IFACE_DOMAIN           "org.example.Snapshot1.Domain"
#define SNAPSHOT_IFACE_SNAPSHOT         "org.example.Snapshot1.Snapshot"

#define SNAPSHOT_ERROR_PREFIX                   "org.example.Snapshot1.Error."
#define SNAPSHOT_ERROR_OPERATION_UNSUPPORTED    SNAPSHOT_ERROR_PREFIX "OperationUnsupported"
#define SNAPSHOT_ERROR_INVALID_ARGUMENT         SNAPSHOT_ERROR_PREFIX "InvalidArgument"
#define SNAPSHOT_ERROR_NO_SUCH_DOMAIN           SNAPSHOT_ERROR_PREFIX "NoSuchDomain"
#define SNAPSHOT_ERROR_NO_SUCH_SNAPSHOT         SNAPSHOT_ERROR_PREFIX "NoSuchSnapshot"
#define SNAPSHOT_ERROR_SNAPSHOT_EXISTS          SNAPSHOT_ERROR_PREFIX "SnapshotExists"
#define SNAPSHOT_ERROR_BUSY                     SNAPSHOT_ERROR_PREFIX "Busy"
#define SNAPSHOT_ERROR_OPERATION_INVALID        SNAPSHOT_ERROR_PREFIX "OperationInvalid"
#define SNAPSHOT_ERROR_NO_SPACE                 SNAPSHOT_ERROR_PREFIX "NoSpace"
#define SNAPSHOT_ERROR_AGENT_UNAVAILABLE        SNAPSHOT_ERROR_PREFIX "AgentUnavailable"
#define SNAPSHOT_ERROR_FAILED                   SNAPSHOT_ERROR_PREFIX "Failed"
#define SNAPSHOT_ERROR_ABORTED                  SNAPSHOT_ERROR_PREFIX "Aborted"

/* virDomainSnapshotCreateFlags */
enum {
        SNAPSHOT_CREATE_REDEFINE        = 1 << 0,
        SNAPSHOT_CREATE_CURRENT         = 1 << 1,
        SNAPSHOT_CREATE_NO_METADATA     = 1 << 2,
        SNAPSHOT_CREATE_HALT            = 1 << 3,
        SNAPSHOT_CREATE_DISK_ONLY       = 1 << 4,
        SNAPSHOT_CREATE_REUSE_EXT       = 1 << 5,
        SNAPSHOT_CREATE_QUIESCE         = 1 << 6,
        SNAPSHOT_CREATE_ATOMIC          = 1 << 7,
        SNAPSHOT_CREATE_LIVE            = 1 << 8,
        SNAPSHOT_CREATE_VALIDATE        = 1 << 9,
        SNAPSHOT_CREATE_ALL             = (1 << 10) - 1,
};

/* virDomainSnapshotListFlags */
enum {
        SNAPSHOT_LIST_ROOTS             = 1 << 0,  /* for Snapshot.ListChildren: DESCENDANTS */
        SNAPSHOT_LIST_DESCENDANTS       = 1 << 0,
        SNAPSHOT_LIST_METADATA          = 1 << 1,
        SNAPSHOT_LIST_LEAVES            = 1 << 2,
        SNAPSHOT_LIST_NO_LEAVES         = 1 << 3,
        SNAPSHOT_LIST_NO_METADATA       = 1 << 4,
        SNAPSHOT_LIST_INACTIVE          = 1 << 5,
        SNAPSHOT_LIST_ACTIVE            = 1 << 6,
        SNAPSHOT_LIST_DISK_ONLY         = 1 << 7,
        SNAPSHOT_LIST_INTERNAL          = 1 << 8,
        SNAPSHOT_LIST_EXTERNAL          = 1 << 9,
        SNAPSHOT_LIST_TOPOLOGICAL       = 1 << 10,
        SNAPSHOT_LIST_ALL               = (1 << 11) - 1,
};

enum {
        SNAPSHOT_REVERT_RUNNING         = 1 << 0,
        SNAPSHOT_REVERT_PAUSED          = 1 << 1,
        SNAPSHOT_REVERT_FORCE           = 1 << 2,
        SNAPSHOT_REVERT_ALL             = (1 << 3) - 1,
};

enum {
        SNAPSHOT_DELETE_CHILDREN        = 1 << 0,
        SNAPSHOT_DELETE_METADATA_ONLY   = 1 << 1,
        SNAPSHOT_DELETE_CHILDREN_ONLY   = 1 << 2,
        SNAPSHOT_DELETE_ALL             = (1 << 3) - 1,
};

enum {
        SNAPSHOT_XML_SECURE             = 1 << 0,
        SNAPSHOT_XML_ALL                = (1 << 1) - 1,
};

enum {
        SNAPSHOT_STOP_FORCE             = 1 << 0,
        SNAPSHOT_STOP_ALL               = (1 << 1) - 1,
};
