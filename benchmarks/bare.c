/* bare: the least a server can do, for the benchmark's ceiling row.
 *
 *     bare PORT RESPONSE_FILE
 *
 * Listens on 127.0.0.1:PORT and answers every request head (up to its blank line; GET only,
 * no bodies: the harness runs it on bodiless workloads) with the bytes of RESPONSE_FILE, which
 * `python -m benchmarks.serve --server bare` writes from the benchmark app's own messages. No
 * parsing, no allocation per request, no Python: one epoll loop, a read per batch of heads and
 * a write per response (more for one bigger than the socket takes). What it reaches on a workload is what the kernel, the loopback and wrk allow on this
 * machine, so its ratio to uvicorn is the most any server could show there.
 *
 * Built by benchmarks/bare.py with $CC or cc (-O2); not part of appserver.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FDS 65536

struct conn {
    unsigned char matched; /* how much of "\r\n\r\n" the bytes read so far end with */
    unsigned long owed;    /* responses not yet written in full */
    size_t offset;         /* bytes of the current response already written */
    int waiting;           /* registered for EPOLLOUT */
};

static struct conn conns[MAX_FDS];
static char *response;
static size_t response_size;

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static void load(const char *path) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) fail(path);
    response_size = (size_t)st.st_size;
    response = malloc(response_size);
    if (response == NULL) fail("malloc");
    for (size_t got = 0; got < response_size;) {
        ssize_t n = read(fd, response + got, response_size - got);
        if (n <= 0) fail(path);
        got += (size_t)n;
    }
    close(fd);
}

static void drop(int epoll, int fd) {
    epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

/* Write what is owed; 0 when all of it went out, 1 when the socket is full, -1 on error. */
static int flush(int fd) {
    struct conn *c = &conns[fd];
    while (c->owed) {
        ssize_t n = write(fd, response + c->offset, response_size - c->offset);
        if (n < 0) return errno == EAGAIN ? 1 : -1;
        c->offset += (size_t)n;
        if (c->offset == response_size) {
            c->offset = 0;
            c->owed--;
        }
    }
    return 0;
}

static void count_heads(struct conn *c, const char *data, ssize_t size) {
    static const char end[] = "\r\n\r\n";
    for (ssize_t i = 0; i < size; i++) {
        if (data[i] == end[c->matched]) {
            if (++c->matched == 4) {
                c->owed++;
                c->matched = 0;
            }
        } else {
            c->matched = data[i] == '\r';
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT RESPONSE_FILE\n", argv[0]);
        return 2;
    }
    load(argv[2]);
    /* A client gone with answers owed must cost its connection (EPIPE), not the server. */
    signal(SIGPIPE, SIG_IGN);
    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0) fail("socket");
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0) fail("bind");
    if (listen(listener, 2048) < 0) fail("listen");
    int epoll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &event);

    static char buffer[65536];
    struct epoll_event ready[256];
    for (;;) {
        int count = epoll_wait(epoll, ready, 256, -1);
        if (count < 0 && errno != EINTR) fail("epoll_wait");
        for (int i = 0; i < count; i++) {
            int fd = ready[i].data.fd;
            if (fd == listener) {
                int client;
                while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (client >= MAX_FDS) {
                        close(client);
                        continue;
                    }
                    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[client] = (struct conn){0};
                    struct epoll_event in = {.events = EPOLLIN, .data.fd = client};
                    epoll_ctl(epoll, EPOLL_CTL_ADD, client, &in);
                }
                continue;
            }
            struct conn *c = &conns[fd];
            if (ready[i].events & EPOLLIN) {
                ssize_t n = read(fd, buffer, sizeof buffer);
                if (n == 0 || (n < 0 && errno != EAGAIN)) {
                    drop(epoll, fd);
                    continue;
                }
                if (n > 0) count_heads(c, buffer, n);
            } else if (ready[i].events & (EPOLLERR | EPOLLHUP)) {
                drop(epoll, fd);
                continue;
            }
            int state = flush(fd);
            if (state < 0) {
                drop(epoll, fd);
            } else if ((state == 1) != c->waiting) {
                c->waiting = state == 1;
                struct epoll_event mod = {.events = EPOLLIN | (c->waiting ? EPOLLOUT : 0),
                                          .data.fd = fd};
                epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &mod);
            }
        }
    }
}
