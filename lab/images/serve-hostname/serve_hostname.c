/*
 * tinykube's serve-hostname: the test server of Service and networking tests.
 *
 * It answers every TCP connection with an HTTP/1.1 200 response whose body is the container's
 * hostname (the pod name, in a pod), and every UDP datagram with a datagram holding the
 * hostname, both on port 9376, as upstream's serve_hostname does: a client can tell which
 * backend answered. The body has no trailing newline, as upstream's.
 *
 * One process, poll() over both sockets, a thread-free child per TCP connection so a slow
 * client never holds up the others. Exits 0 on SIGTERM/SIGINT; as the container's PID 1 it
 * reaps its children.
 *
 * Usage: serve_hostname [--port N] [--tcp=false] [--udp=false]
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* A dual-stack socket when IPv6 exists (pods may be v4-only: fall back to AF_INET). */
static int listen_on(int type, int port) {
    int one = 1, zero = 0;
    int fd = socket(AF_INET6, type, 0);
    if (fd >= 0) {
        struct sockaddr_in6 a6;
        memset(&a6, 0, sizeof a6);
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((unsigned short)port);
        a6.sin6_addr = in6addr_any;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, (struct sockaddr *)&a6, sizeof a6) == 0) goto bound;
        close(fd);
    }
    fd = socket(AF_INET, type, 0);
    if (fd < 0) die("serve_hostname: socket");
    {
        struct sockaddr_in a4;
        memset(&a4, 0, sizeof a4);
        a4.sin_family = AF_INET;
        a4.sin_port = htons((unsigned short)port);
        a4.sin_addr.s_addr = htonl(INADDR_ANY);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0) die("serve_hostname: bind");
    }
bound:
    if (type == SOCK_STREAM && listen(fd, 128) != 0) die("serve_hostname: listen");
    return fd;
}

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Read the request head (up to the blank line, bounded), then answer and close. */
static void serve_http(int conn, const char *host) {
    char req[8192];
    size_t have = 0;
    struct timeval tv = {5, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (have < sizeof req - 1) {
        ssize_t n = read(conn, req + have, sizeof req - 1 - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        have += (size_t)n;
        req[have] = 0;
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      strlen(host));
    write_all(conn, head, (size_t)hl);
    write_all(conn, host, strlen(host));
    shutdown(conn, SHUT_WR);
    close(conn);
}

int main(int argc, char **argv) {
    int port = 9376, tcp = 1, udp = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strncmp(argv[i], "--port=", 7) == 0) {
            port = atoi(argv[i] + 7);
        } else if (strcmp(argv[i], "--tcp=false") == 0) {
            tcp = 0;
        } else if (strcmp(argv[i], "--udp=false") == 0) {
            udp = 0;
        } else {
            fprintf(stderr, "usage: serve_hostname [--port N] [--tcp=false] [--udp=false]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || (!tcp && !udp)) {
        fprintf(stderr, "serve_hostname: bad port or nothing to serve\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char host[256];
    if (gethostname(host, sizeof host) != 0) die("serve_hostname: gethostname");
    host[sizeof host - 1] = 0;

    struct pollfd fds[2];
    int nfds = 0, tcp_fd = -1, udp_fd = -1;
    if (tcp) {
        tcp_fd = listen_on(SOCK_STREAM, port);
        fds[nfds].fd = tcp_fd;
        fds[nfds++].events = POLLIN;
    }
    if (udp) {
        udp_fd = listen_on(SOCK_DGRAM, port);
        fds[nfds].fd = udp_fd;
        fds[nfds++].events = POLLIN;
    }
    fprintf(stderr, "Serving on port %d (tcp=%d udp=%d) as %s\n", port, tcp, udp, host);

    for (;;) {
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR) continue;
            die("serve_hostname: poll");
        }
        for (int i = 0; i < nfds; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            if (fds[i].fd == tcp_fd) {
                int conn = accept(tcp_fd, NULL, NULL);
                if (conn < 0) continue;
                pid_t pid = fork();
                if (pid == 0) {
                    close(tcp_fd);
                    if (udp_fd >= 0) close(udp_fd);
                    serve_http(conn, host);
                    _exit(0);
                }
                close(conn); /* a failed fork drops this one connection, not the server */
            } else if (fds[i].fd == udp_fd) {
                char buf[2048];
                struct sockaddr_storage from;
                socklen_t fl = sizeof from;
                ssize_t n = recvfrom(udp_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
                if (n >= 0) {
                    sendto(udp_fd, host, strlen(host), 0, (struct sockaddr *)&from, fl);
                }
            }
        }
    }
}
