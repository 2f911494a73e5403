/* The ping-pong load of bench_echo.py in C: the same protocol as its Python client
 * (run_pingpong), at a fraction of its CPU cost, so that the servers measured stay the
 * bottleneck (the Python client ran near 100 % of a core against the fastest of them).
 *
 * Usage: pingpong_client HOST PORT CLIENTS ROUND_TRIPS WARMUP
 *
 * Each of CLIENTS connections keeps exactly one 16-byte request in flight: first WARMUP
 * round trips each, then "start" is printed on stdout, then ROUND_TRIPS more each; once the
 * last one is back, "end SECONDS CPU_SECONDS VERIFIED" is printed (wall time and this
 * process's CPU time over the timed round trips, and how many were checked).  Every reply
 * must be its request byte for byte, however the reply is cut into reads; anything else (a
 * wrong or overlong reply, a close, a reset, no progress for 60 s) prints "mismatch ..." or
 * "error ..." on stdout and exits with status 1.  Requests are "%04d%010d\r\n" of the
 * connection's number (mod 10000) and its round trip count (mod 10**10), as in Python.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME 16

struct conn {
    int fd;
    long done;          /* round trips completed */
    int got;            /* bytes of the current reply received so far */
    char want[24];      /* the request in flight (16 bytes and a NUL; room to spare) */
    char reply[FRAME];
};

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(const char *kind, const char *message, long index, long done) {
    printf("%s client %ld: %s after %ld round trips\n", kind, index, message, done);
    fflush(stdout);
    exit(1);
}

static void ask(struct conn *c, long index) {
    snprintf(c->want, sizeof c->want, "%04ld%010ld\r\n", index % 10000, c->done % 10000000000L);
    c->got = 0;
    ssize_t n = send(c->fd, c->want, FRAME, 0); /* an idle socket's buffer takes 16 bytes */
    if (n != FRAME)
        fail("error", n < 0 ? strerror(errno) : "a 16-byte send was cut", index, c->done);
}

/* Make round trips until every connection has TARGET; each reply checked. */
static long run_until(int epfd, struct conn *conns, long clients, long target) {
    long waiting = 0;
    for (long i = 0; i < clients; i++) {
        if (conns[i].done < target) {
            ask(&conns[i], i);
            waiting++;
        }
    }
    struct epoll_event events[256];
    double last = now(CLOCK_MONOTONIC);
    while (waiting) {
        int ready = epoll_wait(epfd, events, 256, 50);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            fail("error", strerror(errno), -1, 0);
        }
        if (ready == 0) {
            if (now(CLOCK_MONOTONIC) - last > 60.0)
                fail("error", "no progress in 60 s", -1, 0);
            continue;
        }
        last = now(CLOCK_MONOTONIC);
        for (int e = 0; e < ready; e++) {
            long i = events[e].data.u64;
            struct conn *c = &conns[i];
            char buf[256];
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    continue;
                fail("mismatch", strerror(errno), i, c->done);
            }
            if (n == 0)
                fail("mismatch", "the server closed", i, c->done);
            if (c->got + n > FRAME || c->done >= target)
                fail("mismatch", "more bytes than the request came back", i, c->done);
            memcpy(c->reply + c->got, buf, n);
            if (memcmp(c->reply + c->got, c->want + c->got, n) != 0)
                fail("mismatch", "a reply differs from its request", i, c->done);
            c->got += n;
            if (c->got < FRAME)
                continue; /* the rest of the reply is still to come */
            c->done++;
            if (c->done < target)
                ask(c, i);
            else
                waiting--;
        }
    }
    long total = 0;
    for (long i = 0; i < clients; i++)
        total += conns[i].done;
    return total;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT CLIENTS ROUND_TRIPS WARMUP\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    long clients = atol(argv[3]), round_trips = atol(argv[4]), warmup = atol(argv[5]);
    if (port <= 0 || clients <= 0 || round_trips <= 0 || warmup < 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    struct conn *conns = calloc(clients, sizeof *conns);
    int epfd = epoll_create1(0);
    if (!conns || epfd < 0)
        fail("error", strerror(errno), -1, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        fail("error", "not an IPv4 address", -1, 0);
    for (long i = 0; i < clients; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
            fail("error", strerror(errno), i, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        /* Non-blocking from here (connected blocking, as the Python client does). */
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
            fail("error", strerror(errno), i, 0);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (unsigned long)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            fail("error", strerror(errno), i, 0);
        conns[i].fd = fd;
    }
    run_until(epfd, conns, clients, warmup);
    printf("start\n");
    fflush(stdout);
    double cpu0 = now(CLOCK_PROCESS_CPUTIME_ID), t0 = now(CLOCK_MONOTONIC);
    long verified = run_until(epfd, conns, clients, warmup + round_trips);
    double elapsed = now(CLOCK_MONOTONIC) - t0, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    printf("end %.9f %.9f %ld\n", elapsed, cpu, verified - clients * warmup);
    fflush(stdout);
    for (long i = 0; i < clients; i++)
        close(conns[i].fd);
    return 0;
}
