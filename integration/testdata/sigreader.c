/*
 * sigreader: reads files while a 1 ms interval timer interrupts it with
 * SIGALRM, caught by a handler installed WITHOUT SA_RESTART, as many
 * legacy programs have. On a local file system open(2) and read(2) never
 * fail with EINTR here; it reports every EINTR it sees.
 *
 *   sigreader ROUNDS FILE...
 *
 * It prints "reads=N eintr=N signals=N" and exits 0, or 1 on any other
 * error (a short or failed read is printed with its errno).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t signals;

static void on_alarm(int sig) { (void)sig; signals++; }

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: sigreader ROUNDS FILE...\n");
		return 2;
	}
	int rounds = atoi(argv[1]);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) != 0) {
		perror("sigaction");
		return 1;
	}
	struct itimerval it = {{0, 1000}, {0, 1000}};
	if (setitimer(ITIMER_REAL, &it, NULL) != 0) {
		perror("setitimer");
		return 1;
	}
	long reads = 0, eintr = 0;
	char buf[65536];
	for (int r = 0; r < rounds; r++) {
		for (int i = 2; i < argc; i++) {
			int fd = open(argv[i], O_RDONLY);
			if (fd < 0) {
				if (errno == EINTR) { eintr++; continue; }
				fprintf(stderr, "open %s: %s\n", argv[i], strerror(errno));
				return 1;
			}
			for (;;) {
				ssize_t n = read(fd, buf, sizeof buf);
				if (n > 0) continue;
				if (n == 0) break;
				if (errno == EINTR) { eintr++; break; }
				fprintf(stderr, "read %s: %s\n", argv[i], strerror(errno));
				close(fd);
				return 1;
			}
			close(fd);
			reads++;
		}
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	printf("reads=%ld eintr=%ld signals=%ld\n", reads, eintr, (long)signals);
	return 0;
}
