/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/macro.h"
#include "polkit-agent.h"

#define PKTTYAGENT "/usr/bin/pkttyagent"
/* How long to wait for the agent to register before going on without it. */
#define AGENT_REGISTER_TIMEOUT_MSEC 5000

static pid_t agent_pid = 0;

void polkit_agent_open(void) {
        _cleanup_close_ int notify_read = -1, notify_write = -1;
        char pid_text[32];
        struct pollfd p;
        int fds[2], tty;
        pid_t pid;

        if (agent_pid > 0)
                return;
        if (geteuid() == 0 || !isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
                return;
        if (access(PKTTYAGENT, X_OK) < 0)
                return;

        /* pkttyagent asks on the controlling terminal; without one it would only complain. */
        tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (tty < 0)
                return;
        (void) close(tty);

        if (pipe2(fds, O_CLOEXEC) < 0)
                return;
        notify_read = fds[0];
        notify_write = fds[1];

        snprintf(pid_text, sizeof(pid_text), "%d", (int) getpid());

        pid = fork();
        if (pid < 0)
                return;
        if (pid == 0) {
                /* The agent signals on fd 3 (by closing it) once it is registered. dup2()
                 * clears O_CLOEXEC, except when the descriptor already is 3. */
                if (notify_write == 3) {
                        if (fcntl(3, F_SETFD, 0) < 0)
                                _exit(EXIT_FAILURE);
                } else if (dup2(notify_write, 3) < 0)
                        _exit(EXIT_FAILURE);
                execl(PKTTYAGENT, "pkttyagent", "--notify-fd", "3", "--fallback", "--process", pid_text, (char *) NULL);
                _exit(EXIT_FAILURE);
        }

        agent_pid = pid;
        (void) close(TAKE_FD(notify_write));

        /* Readable (EOF) once the agent registered, or exited. */
        p = (struct pollfd) { .fd = notify_read, .events = POLLIN };
        while (poll(&p, 1, AGENT_REGISTER_TIMEOUT_MSEC) < 0 && errno == EINTR)
                ;
}

void polkit_agent_close(void) {
        if (agent_pid <= 0)
                return;

        (void) kill(agent_pid, SIGTERM);
        while (waitpid(agent_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        agent_pid = 0;
}
