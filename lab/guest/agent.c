/*
 * The lab guest's only service, PID 1 after /init has brought the network up.
 *   TCP 80: "GET /" answers "name=<n> counter=<c> boot=<id> uptime_ms=<ms>"; the counter lives in guest memory and
 *           counts requests, so a migrated guest keeps counting where a rebooted one starts again.
 *           "GET /dirty?mib=N" starts (N>0) or stops (N=0) a child that rewrites N MiB in a loop.
 *   TCP 7:  echo, for long-lived connections.   UDP 7: echo, for millisecond probes.
 *   The ACPI power button (evdev) powers the guest off, so libvirt's graceful shutdown works.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/input.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 256

static char guest_name[64] = "guest";
static unsigned long long boot_id;
static unsigned long long counter;
static pid_t dirtier;

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int listener(int type, int port) {
    int fd = socket(AF_INET, type, 0), one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); exit(1); }
    if (type == SOCK_STREAM) listen(fd, 64);
    return fd;
}

static void dirty_memory(long mib) {
    size_t size = (size_t)mib << 20;
    volatile unsigned char *buf = malloc(size);  /* volatile: the stores are the point, keep them */
    for (unsigned char value = 1;; value++)
        for (size_t i = 0; i < size; i += 4096) buf[i] = value;
}

static void set_dirtier(long mib) {
    if (dirtier > 0) { kill(dirtier, SIGKILL); waitpid(dirtier, NULL, 0); dirtier = 0; }
    if (mib > 0 && (dirtier = fork()) == 0) {
        /* The child must not hold the client's connection (its answer would never end) nor the listeners. */
        for (int fd = 3; fd < MAX_FDS + 16; fd++) close(fd);
        dirty_memory(mib);
    }
}

static void answer_http(int fd) {
    char req[1024], body[256], resp[512];
    ssize_t n = recv(fd, req, sizeof req - 1, 0);
    if (n <= 0) return;
    req[n] = 0;
    char *mib = strstr(req, "/dirty?mib=");
    if (mib) set_dirtier(strtol(mib + 11, NULL, 10));
    counter++;
    int len = snprintf(body, sizeof body, "name=%s counter=%llu boot=%016llx uptime_ms=%lld dirty=%d\n",
                       guest_name, counter, boot_id, now_ms(), dirtier > 0);
    int total = snprintf(resp, sizeof resp, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                         "Connection: close\r\n\r\n%s", len, body);
    send(fd, resp, total, MSG_NOSIGNAL);
}

static int open_power_buttons(struct pollfd *fds, int nfds) {
    DIR *dir = opendir("/dev/input");
    struct dirent *entry;
    char path[300];
    while (dir && (entry = readdir(dir)) && nfds < MAX_FDS) {
        if (strncmp(entry->d_name, "event", 5)) continue;
        snprintf(path, sizeof path, "/dev/input/%s", entry->d_name);
        int fd = open(path, O_RDONLY | O_NONBLOCK);
        if (fd >= 0) fds[nfds++] = (struct pollfd){.fd = fd, .events = POLLIN};
    }
    if (dir) closedir(dir);
    return nfds;
}

int main(int argc, char **argv) {
    if (argc > 1) snprintf(guest_name, sizeof guest_name, "%s", argv[1]);
    int urandom = open("/dev/urandom", O_RDONLY);
    if (urandom < 0 || read(urandom, &boot_id, sizeof boot_id) != sizeof boot_id) boot_id = (unsigned long long)now_ms();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);

    struct pollfd fds[MAX_FDS];
    int http = listener(SOCK_STREAM, 80), echo = listener(SOCK_STREAM, 7), udp = listener(SOCK_DGRAM, 7);
    fds[0] = (struct pollfd){.fd = http, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = echo, .events = POLLIN};
    fds[2] = (struct pollfd){.fd = udp, .events = POLLIN};
    int buttons_end = open_power_buttons(fds, 3), nfds = buttons_end;
    printf("ARCTICTERN-AGENT-READY name=%s\n", guest_name);
    fflush(stdout);

    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}  /* PID 1 reaps whatever the init left behind */
        if (poll(fds, nfds, 1000) <= 0) continue;
        char buf[2048];
        if (fds[0].revents & POLLIN) {
            int client = accept(http, NULL, NULL);
            if (client >= 0) { answer_http(client); close(client); }
        }
        if ((fds[1].revents & POLLIN) && nfds < MAX_FDS) {
            int client = accept(echo, NULL, NULL);
            if (client >= 0) fds[nfds++] = (struct pollfd){.fd = client, .events = POLLIN};
        }
        if (fds[2].revents & POLLIN) {
            struct sockaddr_in peer;
            socklen_t peer_len = sizeof peer;
            ssize_t n = recvfrom(udp, buf, sizeof buf, 0, (struct sockaddr *)&peer, &peer_len);
            if (n > 0) sendto(udp, buf, n, 0, (struct sockaddr *)&peer, peer_len);
        }
        for (int i = 3; i < buttons_end; i++) {
            struct input_event ev;
            while (fds[i].revents & POLLIN && read(fds[i].fd, &ev, sizeof ev) == sizeof ev)
                if (ev.type == EV_KEY && ev.code == KEY_POWER && ev.value == 1) {
                    printf("ARCTICTERN-AGENT-POWEROFF\n");
                    fflush(stdout);
                    sync();
                    reboot(RB_POWER_OFF);
                }
        }
        for (int i = buttons_end; i < nfds; i++) {
            if (!fds[i].revents) continue;
            ssize_t n = recv(fds[i].fd, buf, sizeof buf, 0);
            if (n <= 0 || send(fds[i].fd, buf, n, MSG_NOSIGNAL) != n) {
                close(fds[i].fd);
                fds[i--] = fds[--nfds];
            }
        }
    }
}
