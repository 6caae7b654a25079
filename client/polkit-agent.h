/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A text-mode polkit agent for the duration of one command, as systemctl does: without one,
 * an unprivileged user at a console has no way to answer polkit's password question. */
#pragma once

/* Starts pkttyagent when it can be of use: stdin and stderr are terminals, the caller is
 * not root (snapshotd lets root through without asking), and pkttyagent is installed.
 * Returns once the agent is registered (or gave up). Failures are not fatal: the call
 * then fails with InteractiveAuthorizationRequired or AccessDenied, which says enough. */
void polkit_agent_open(void);
void polkit_agent_close(void);
