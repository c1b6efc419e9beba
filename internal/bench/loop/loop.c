/*
 * loop: the syscall loops scripts/bench times, in C so that nothing but the
 * syscalls is measured, the same way on tmpfs and on a secretfs mount.
 *
 *   loop [-s] [-b BYTES] MODE N PATH...
 *
 * Makes N passes over the PATHs; on each, one operation per path:
 *   read   open(O_RDONLY), read until end of file, close
 *   stat   stat
 *   write  open(O_WRONLY|O_CREAT|O_TRUNC), write BYTES bytes (default
 *          1024), close: what `echo value > file` does
 * Prints the mean nanoseconds per operation, or with -s each operation's
 * nanoseconds, one a line. Any failed call (close included) is fatal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 16];

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "loop: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static void read_file(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open", path);
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		;
	if (n < 0)
		die("read", path);
	if (close(fd) < 0)
		die("close", path);
}

static void stat_file(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		die("stat", path);
}

static size_t write_bytes = 1024;

static void write_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("open", path);
	if (write(fd, buf, write_bytes) != (ssize_t)write_bytes)
		die("write", path);
	if (close(fd) < 0)
		die("close", path);
}

static void usage(void)
{
	fprintf(stderr, "usage: loop [-s] [-b BYTES] read|stat|write N PATH...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int each = 0, opt;
	while ((opt = getopt(argc, argv, "sb:")) != -1) {
		switch (opt) {
		case 's':
			each = 1;
			break;
		case 'b':
			write_bytes = strtoul(optarg, NULL, 10);
			if (write_bytes > sizeof buf)
				usage();
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 3)
		usage();
	void (*op)(const char *);
	if (strcmp(argv[optind], "read") == 0)
		op = read_file;
	else if (strcmp(argv[optind], "stat") == 0)
		op = stat_file;
	else if (strcmp(argv[optind], "write") == 0)
		op = write_file;
	else
		usage();
	long n = strtol(argv[optind + 1], NULL, 10);
	char **paths = argv + optind + 2;
	int npaths = argc - optind - 2;
	if (n < 1)
		usage();
	memset(buf, 'x', sizeof buf);

	long long start = now_ns();
	for (long i = 0; i < n; i++) {
		for (int p = 0; p < npaths; p++) {
			if (!each) {
				op(paths[p]);
				continue;
			}
			long long t = now_ns();
			op(paths[p]);
			printf("%lld\n", now_ns() - t);
		}
	}
	if (!each)
		printf("%.1f\n", (double)(now_ns() - start) / ((double)n * npaths));
	return 0;
}
