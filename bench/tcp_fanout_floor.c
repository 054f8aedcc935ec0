// The kernel's floor under a fan-out on this machine, for BENCHMARKS.md: N
// loopback TCP connections; the sender (pinned to CPU 0, like the hub) makes one
// 150-byte send(2) on each, 10 rounds per second, while a reader thread
// (pinned to CPU 1, like the load generator) drains them with epoll. Prints the
// sender's time per round of N sends: what any hub on one core of this machine
// pays in the kernel alone to deliver one event to N subscribers over TCP.
//
// The first WARMUP rounds are not counted: a fresh TCP connection answers its
// first 16 or so segments with an immediate ACK (Linux's quick-ACK mode), and
// over loopback that ACK is made and taken in on the sending core, so those
// rounds cost about 1.4x the steady state (measured here: 75-98 ms against
// 52-54 ms for 9,900 sends). `volley bench fanout --warmup` skips the same.
//
// The order of the sends matters: with ORDER `alternate`, every other round
// sends in one fixed shuffled order instead of accept order, and both are
// reported. (The kernel's socket state is allocated about in accept order,
// and a walk in that order goes forward through memory: measured here, the
// shuffled rounds cost 5-10 % more CPU. The hub walks its subscribers in
// connection-key order, which is its accept order, for this reason.)
//
//   cc -O2 -pthread -o target/bench/tcp_fanout_floor bench/tcp_fanout_floor.c
//   target/bench/tcp_fanout_floor 9900 [ROUNDS [WARMUP [ORDER]]]
//   ROUNDS_FILE=rounds.txt target/bench/tcp_fanout_floor 9900   (also each round's wall ms)
//   SENDERS=2 target/bench/tcp_fanout_floor 9900
//       (each round's sends split over 2 threads, each sending its contiguous
//        share, the round ending when the last is done; nothing is pinned, so
//        the senders and the reader share every CPU: the kernel's floor for
//        bench/fanout_cores.sh's two-core mode. CPU times are then the sum
//        of the senders')
//       (2 N descriptors: N + 100 <= open-files limit / 2; defaults 40, 20
//        and `accept`)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static int N = 10000, ROUNDS = 40, WARMUP = 20, ALTERNATE = 0, SENDERS = 1, *srv, *cli, *order;
static pthread_barrier_t round_start, round_end;
static volatile long received = 0;
static double reader_cpu = 0; // the reader thread's CPU time, all rounds
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
// The sender thread's own CPU time: on a shared machine, wall time per round
// also counts the time other processes held the core.
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static void pin(int cpu) { if (SENDERS > 1) return; cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); sched_setaffinity(0, sizeof s, &s); }

// Sender `k`'s share of a round: the k-th contiguous slice of the order.
static int send_share(int k, int shuffled) {
    static const char msg[150] = {'x'};
    int from = (int)((long)N * k / SENDERS), to = (int)((long)N * (k + 1) / SENDERS);
    for (int i = from; i < to; i++)
        if (send(srv[shuffled ? order[i] : i], msg, sizeof msg, 0) != sizeof msg) { perror("send"); return -1; }
    return 0;
}

// Senders 1 and up (SENDERS > 1): a share of every round, between the round's
// two barriers; their CPU time is added to the main sender's.
static double helper_cpu[64];
static void *helper(void *arg) {
    int k = (int)(long)arg;
    for (int r = 0; r < WARMUP + ROUNDS; r++) {
        pthread_barrier_wait(&round_start);
        double c0 = cpu();
        int shuffled = ALTERNATE && (r & 1);
        if (send_share(k, shuffled)) exit(1);
        helper_cpu[k] = cpu() - c0;
        pthread_barrier_wait(&round_end);
    }
    return NULL;
}

static void *reader(void *arg) {
    pin(1);
    int ep = epoll_create1(0);
    for (int i = 0; i < N; i++) { struct epoll_event e = {.events = EPOLLIN, .data.fd = cli[i]}; epoll_ctl(ep, EPOLL_CTL_ADD, cli[i], &e); }
    struct epoll_event ev[1024]; char buf[65536];
    long want = (long)N * (WARMUP + ROUNDS) * 150;
    long got = 0;
    while (got < want) {
        int n = epoll_wait(ep, ev, 1024, 1000);
        for (int i = 0; i < n; i++) { ssize_t r = recv(ev[i].data.fd, buf, sizeof buf, 0); if (r > 0) got += r; }
    }
    received = got;
    reader_cpu = cpu();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) N = atoi(argv[1]);
    if (argc > 2) ROUNDS = atoi(argv[2]);
    if (argc > 3) WARMUP = atoi(argv[3]);
    if (argc > 4) ALTERNATE = strcmp(argv[4], "alternate") == 0;
    if (getenv("SENDERS")) SENDERS = atoi(getenv("SENDERS"));
    if (N < 1 || ROUNDS < 1 || WARMUP < 0 || (argc > 4 && !ALTERNATE && strcmp(argv[4], "accept"))
        || SENDERS < 1 || SENDERS > 64) {
        fprintf(stderr, "usage: [SENDERS=1..64] %s N [ROUNDS [WARMUP [accept|alternate]]]\n", argv[0]);
        return 2;
    }
    struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl);
    srv = calloc(N, sizeof(int)); cli = calloc(N, sizeof(int));
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(l, (void *)&a, sizeof a); listen(l, 4096);
    socklen_t al = sizeof a; getsockname(l, (void *)&a, &al);
    for (int i = 0; i < N; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(cli[i], (void *)&a, sizeof a)) { perror("connect"); return 1; }
        srv[i] = accept(l, NULL, NULL);
        int one = 1; setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(cli[i], F_SETFL, O_NONBLOCK);
    }
    // A fixed shuffle (Fisher-Yates, fixed seed) for ORDER `alternate`.
    order = calloc(N, sizeof(int));
    for (int i = 0; i < N; i++) order[i] = i;
    srand(7);
    for (int i = N - 1; i > 0; i--) { int j = rand() % (i + 1), x = order[i]; order[i] = order[j]; order[j] = x; }
    double by_order[2] = {0, 0}; int rounds_by_order[2] = {0, 0};
    pthread_t t; pthread_create(&t, NULL, reader, NULL);
    pin(0);
    pthread_barrier_init(&round_start, NULL, SENDERS);
    pthread_barrier_init(&round_end, NULL, SENDERS);
    pthread_t helpers[64];
    for (int k = 1; k < SENDERS; k++) pthread_create(&helpers[k], NULL, helper, (void *)(long)k);
    usleep(200000);
    double total = 0, best = 1e9, cpu_total = 0, warm_total = 0;
    double *walls = calloc(ROUNDS, sizeof(double)), *cpus = calloc(ROUNDS, sizeof(double));
    for (int r = 0; r < WARMUP + ROUNDS; r++) {
        double t0 = now(), c0 = cpu();
        int shuffled = ALTERNATE && (r & 1);
        if (SENDERS > 1) pthread_barrier_wait(&round_start);
        if (send_share(0, shuffled)) return 1;
        double dc = cpu() - c0;
        if (SENDERS > 1) {
            pthread_barrier_wait(&round_end);
            for (int k = 1; k < SENDERS; k++) dc += helper_cpu[k];
        }
        double dt = now() - t0;
        if (r < WARMUP) {
            warm_total += dt;
        } else {
            total += dt; cpu_total += dc; if (dt < best) best = dt;
            walls[r - WARMUP] = dt; cpus[r - WARMUP] = dc;
            by_order[shuffled] += dc; rounds_by_order[shuffled]++;
        }
        usleep(100000); // 10 rounds per second, like 10 events/s
    }
    // ROUNDS_FILE=PATH: each counted round's wall time (ms) appended to PATH,
    // a line each, so that runs can be pooled (bench/fanout_cores.sh).
    const char *rounds_file = getenv("ROUNDS_FILE");
    if (rounds_file) {
        FILE *f = fopen(rounds_file, "a");
        if (!f) { perror(rounds_file); return 1; }
        for (int i = 0; i < ROUNDS; i++) fprintf(f, "%.3f\n", 1000 * walls[i]);
        fclose(f);
    }
    qsort(walls, ROUNDS, sizeof(double), cmp);
    qsort(cpus, ROUNDS, sizeof(double), cmp);
    pthread_join(t, NULL);
    for (int k = 1; k < SENDERS; k++) pthread_join(helpers[k], NULL);
    if (SENDERS > 1) printf("%d sender threads, nothing pinned: ", SENDERS);
    printf("%d connections: one 150-byte send(2) to each, %d rounds after %d warm-up rounds (mean %.1f ms): "
           "mean %.1f ms per round (%.2f us per send), median %.1f ms, best %.1f ms; "
           "sender CPU %.1f ms per round (%.2f us per send), median %.1f ms; "
           "reader CPU %.1f ms per round (warm-up included); reader got %ld bytes\n",
           N, ROUNDS, WARMUP, WARMUP ? 1000 * warm_total / WARMUP : 0.0,
           1000 * total / ROUNDS, 1e6 * total / ROUNDS / N, 1000 * walls[ROUNDS / 2], 1000 * best,
           1000 * cpu_total / ROUNDS, 1e6 * cpu_total / ROUNDS / N, 1000 * cpus[ROUNDS / 2],
           1000 * reader_cpu / (WARMUP + ROUNDS), received);
    if (ALTERNATE && rounds_by_order[0] && rounds_by_order[1])
        printf("sender CPU per round: %.1f ms in accept order, %.1f ms in a shuffled order (%+.1f %%)\n",
               1000 * by_order[0] / rounds_by_order[0], 1000 * by_order[1] / rounds_by_order[1],
               100 * (by_order[1] / rounds_by_order[1] / (by_order[0] / rounds_by_order[0]) - 1));
    return 0;
}
