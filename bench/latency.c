/*
 * latency.c — a TCP relay that adds round-trip time, for bench/s3.sh.
 *
 *   cc -O2 -pthread -o latency bench/latency.c
 *   latency LISTEN_PORT UPSTREAM_PORT RTT_MS
 *
 * Listens on 127.0.0.1:LISTEN_PORT and relays every connection to 127.0.0.1:UPSTREAM_PORT, delaying every
 * byte by RTT_MS / 2 in each direction, so that a request and its answer cross RTT_MS more of round trip,
 * as a server in another region would. It delays without limiting throughput (what arrives is queued with
 * the time it is due and written then, while more is read; at most QUEUE_MAX bytes queued per direction):
 * what `tc qdisc add dev lo root netem delay` does, on machines without sch_netem. In C, not Python,
 * because a relay in Python caps loopback at a few hundred MB/s, less than the tools it measures.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BLOCK_MAX (256u << 10)
#define QUEUE_MAX (64u << 20)

typedef struct block {
    struct block *next;
    struct timespec due;
    size_t len; /* 0: the end of the stream */
    char data[];
} block;

typedef struct pipe_ {
    int from, to;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    block *head, *tail;
    size_t queued;
    int dead; /* the writer failed: the reader stops */
} pipe_;

static long delay_ns;
static struct sockaddr_in upstream;

static void *reader(void *arg)
{
    pipe_ *p = arg;
    for (;;) {
        block *b = malloc(sizeof(*b) + BLOCK_MAX);
        if (!b)
            break;
        ssize_t n = read(p->from, b->data, BLOCK_MAX);
        b->len = n > 0 ? (size_t)n : 0;
        b->next = NULL;
        clock_gettime(CLOCK_MONOTONIC, &b->due);
        b->due.tv_nsec += delay_ns;
        b->due.tv_sec += b->due.tv_nsec / 1000000000;
        b->due.tv_nsec %= 1000000000;
        pthread_mutex_lock(&p->mu);
        while (p->queued > QUEUE_MAX && !p->dead)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->tail)
            p->tail->next = b;
        else
            p->head = b;
        p->tail = b;
        p->queued += b->len;
        int stop = p->dead || b->len == 0;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
    }
    return NULL;
}

static void *writer(void *arg)
{
    pipe_ *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head)
            pthread_cond_wait(&p->cv, &p->mu);
        block *b = p->head;
        p->head = b->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &b->due, NULL) == EINTR)
            ;
        size_t len = b->len, off = 0;
        while (off < len) {
            ssize_t n = write(p->to, b->data + off, len - off);
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        free(b);
        pthread_mutex_lock(&p->mu);
        p->queued -= len;
        if (off < len)
            p->dead = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (len == 0 || off < len) {
            shutdown(p->to, SHUT_WR);
            if (off < len)
                shutdown(p->from, SHUT_RD); /* wakes the reader */
            break;
        }
    }
    return NULL;
}

/* Relays one connection both ways, then closes both ends. */
static void *relay(void *arg)
{
    int client = (int)(intptr_t)arg;
    int up = socket(AF_INET, SOCK_STREAM, 0);
    if (up < 0 || connect(up, (struct sockaddr *)&upstream, sizeof(upstream)) < 0) {
        close(client);
        if (up >= 0)
            close(up);
        return NULL;
    }
    int one = 1;
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pipe_ pp[2] = { { .from = client, .to = up }, { .from = up, .to = client } };
    pthread_t t[4];
    for (int i = 0; i < 2; i++) {
        pthread_mutex_init(&pp[i].mu, NULL);
        pthread_cond_init(&pp[i].cv, NULL);
        pthread_create(&t[2 * i], NULL, reader, &pp[i]);
        pthread_create(&t[2 * i + 1], NULL, writer, &pp[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        while (pp[i].head) {
            block *b = pp[i].head;
            pp[i].head = b->next;
            free(b);
        }
    close(client);
    close(up);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: latency LISTEN_PORT UPSTREAM_PORT RTT_MS\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    delay_ns = atol(argv[3]) * 1000000L / 2;
    upstream = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    inet_pton(AF_INET, "127.0.0.1", &upstream.sin_addr);
    struct sockaddr_in l = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
    inet_pton(AF_INET, "127.0.0.1", &l.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s < 0 || bind(s, (struct sockaddr *)&l, sizeof(l)) < 0 || listen(s, 128) < 0) {
        perror("latency: listen");
        return 1;
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, relay, (void *)(intptr_t)c) != 0)
            close(c);
        pthread_attr_destroy(&a);
    }
}
