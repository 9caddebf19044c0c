/*
 * tinykube's pause: PID 1 of every pod's sandbox container.
 *
 * The sandbox holds the pod's network, IPC and UTS namespaces while app containers come and go,
 * so it must do nothing, cost nothing, and stop at once when the kubelet stops the pod: Docker
 * sends SIGTERM, and a PID 1 that ignores it is SIGKILLed only after the stop timeout (slow
 * pod deletion, exit code 137). When app containers share its PID namespace, orphaned processes
 * are reparented to it, so it also reaps them: without that they stay zombies until the pod goes.
 *
 * Written for tinykube; the behaviour follows the upstream pause container.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    /* Exit 0: stopping the sandbox is the normal end of a pod, not a failure. */
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    /* Reap every child that has exited; more than one SIGCHLD can merge into one delivery. */
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int install(int sig, void (*handler)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | (sig == SIGCHLD ? SA_NOCLDSTOP : 0);
    return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts("tinykube pause 1");
        return 0;
    }
    if (getpid() != 1) {
        /* Still works, but nobody is reaped unless this process is the namespace's init. */
        fputs("pause: warning: not PID 1\n", stderr);
    }
    if (install(SIGTERM, on_stop) < 0 || install(SIGINT, on_stop) < 0 ||
        install(SIGCHLD, on_child) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
