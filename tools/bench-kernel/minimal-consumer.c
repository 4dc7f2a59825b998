/*
 * The "limit row" of `pnpm bench:kernel`: the least a TCMU consumer can do per command.
 * Single thread, libc only, commands served one after another, in ring order, in place.
 *
 *   minimal-consumer /dev/uioN MAP_SIZE IMAGE_PATH BLOCK_SIZE BLOCK_COUNT
 *
 * Prints "ready" on stdout once the ring is mapped (link the LUN only after that), serves until
 * SIGTERM or SIGINT, then exits 0. Just enough SCSI for Linux sd: TEST UNIT READY, INQUIRY
 * (standard, VPD 00/80/83), READ CAPACITY 10/16, MODE SENSE 6/10 (caching page, WCE=1),
 * REQUEST SENSE, READ/WRITE 6/10/12/16, SYNCHRONIZE CACHE 10/16; anything else is
 * CHECK CONDITION, ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
 * See /work/shared/notes/tcmu-reference.md, sections 1 and 7, for the ring protocol.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#define __LINUX_UIO_H /* its struct iovec would clash with libc's (same layout) */
#include <linux/types.h>
#include <linux/target_core_user.h>

#define GOOD 0x00
#define CHECK_CONDITION 0x02
#define NO_SENSE 0x00
#define MEDIUM_ERROR 0x03
#define ILLEGAL_REQUEST 0x05

static int image_fd;
static uint32_t block_size;
static uint64_t block_count;
static int cap_read_len;
static volatile sig_atomic_t stopping;

/* One command being served: where its CDB and iovecs are, and what it answers. */
struct cmd {
	char *map;
	struct tcmu_cmd_entry *entry;
	const uint8_t *cdb;
	uint32_t iov_cnt;
	size_t data_len;  /* total length of the iovecs */
	uint8_t status;
	uint8_t sense[18];
	int read_len_set; /* respond with TCMU_UFLAG_READ_LEN */
	uint32_t read_len;
};

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p) { return (uint32_t)be16(p) << 16 | be16(p + 2); }
static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }
static void put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static void put_be32(uint8_t *p, uint32_t v) { put_be16(p, v >> 16); put_be16(p + 2, (uint16_t)v); }
static void put_be64(uint8_t *p, uint64_t v) { put_be32(p, v >> 32); put_be32(p + 4, (uint32_t)v); }

/* The i-th iovec of the entry, as a pointer into the map (the entry is packed: copy it out). */
static struct iovec iov_get(const struct cmd *c, uint32_t i)
{
	struct iovec v;
	memcpy(&v, (char *)c->entry + offsetof(struct tcmu_cmd_entry, req.iov) + i * sizeof v, sizeof v);
	v.iov_base = c->map + (uintptr_t)v.iov_base;
	return v;
}

/* Fixed-format sense data (18 bytes): current error, key, ASC/ASCQ. */
static void fixed_sense(uint8_t *sense, uint8_t key, uint8_t asc, uint8_t ascq)
{
	memset(sense, 0, 18);
	sense[0] = 0x70;
	sense[2] = key;
	sense[7] = 18 - 8;
	sense[12] = asc;
	sense[13] = ascq;
}

static void check_condition(struct cmd *c, uint8_t key, uint8_t asc, uint8_t ascq)
{
	c->status = CHECK_CONDITION;
	fixed_sense(c->sense, key, asc, ascq);
}

/* After `n` bytes of Data-In are in place: tell the kernel how many, or zero the rest. */
static void data_in_done(struct cmd *c, size_t n)
{
	if (cap_read_len) {
		c->read_len_set = 1;
		c->read_len = (uint32_t)n;
		return;
	}
	for (uint32_t i = 0; i < c->iov_cnt; i++) {
		struct iovec v = iov_get(c, i);
		size_t keep = n < v.iov_len ? n : v.iov_len;
		memset((char *)v.iov_base + keep, 0, v.iov_len - keep); /* no stale bytes leak out */
		n -= keep;
	}
}

/* Data-In of an emulated command: at most `alloc` bytes of `buf` (allocation length). */
static void data_in(struct cmd *c, const uint8_t *buf, size_t len, size_t alloc)
{
	size_t n = len < alloc ? len : alloc, done = 0;
	for (uint32_t i = 0; i < c->iov_cnt && done < n; i++) {
		struct iovec v = iov_get(c, i);
		size_t k = n - done < v.iov_len ? n - done : v.iov_len;
		memcpy(v.iov_base, buf + done, k);
		done += k;
	}
	data_in_done(c, done);
}

/* preadv/pwritev of `len` bytes at `off` straight on the iovecs, IOV_MAX at a time. */
static int transfer(struct cmd *c, int writing, off_t off, size_t len)
{
	struct iovec v[IOV_MAX];
	uint32_t i = 0;
	while (len > 0 && i < c->iov_cnt) {
		int n = 0;
		size_t chunk = 0;
		for (; n < IOV_MAX && i < c->iov_cnt && chunk < len; n++, i++) {
			v[n] = iov_get(c, i);
			if (v[n].iov_len > len - chunk)
				v[n].iov_len = len - chunk;
			chunk += v[n].iov_len;
		}
		struct iovec *p = v;
		for (size_t left = chunk; left > 0;) {
			ssize_t r = writing ? pwritev(image_fd, p, n, off) : preadv(image_fd, p, n, off);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return -1; /* error, or end of file on a read */
			off += r;
			left -= (size_t)r;
			for (; n > 0 && (size_t)r >= p->iov_len; p++, n--)
				r -= (ssize_t)p->iov_len; /* short transfer: skip what is done */
			if (n > 0) {
				p->iov_base = (char *)p->iov_base + r;
				p->iov_len -= (size_t)r;
			}
		}
		len -= chunk;
	}
	return len == 0 ? 0 : -1;
}

static void read_write(struct cmd *c, int writing, uint64_t lba, uint32_t blocks, int fua)
{
	if (lba > block_count || blocks > block_count - lba) {
		check_condition(c, ILLEGAL_REQUEST, 0x21, 0x00); /* LBA OUT OF RANGE */
		return;
	}
	size_t len = (size_t)blocks * block_size;
	if (len > c->data_len)
		len = c->data_len; /* never past the buffer the kernel gave us */
	if (transfer(c, writing, (off_t)(lba * block_size), len) != 0 ||
	    (writing && fua && fdatasync(image_fd) != 0)) {
		check_condition(c, MEDIUM_ERROR, writing ? 0x0C : 0x11, 0x00);
		return;
	}
	if (!writing && len < c->data_len) /* a Data-In buffer longer than the transfer */
		data_in_done(c, len);
}

static void inquiry(struct cmd *c)
{
	const uint8_t *cdb = c->cdb;
	uint8_t buf[64] = {0};
	size_t len;
	static const char serial[] = "bench-minimal-0001";
	if (!(cdb[1] & 0x01)) {
		if (cdb[2] != 0) {
			check_condition(c, ILLEGAL_REQUEST, 0x24, 0x00); /* INVALID FIELD IN CDB */
			return;
		}
		buf[0] = 0x00; /* connected, direct access block device */
		buf[2] = 0x06; /* VERSION: SPC-4 */
		buf[3] = 0x02; /* RESPONSE DATA FORMAT 2 */
		buf[4] = 36 - 5;
		buf[7] = 0x02; /* CmdQue: command queueing */
		memcpy(buf + 8, "NODETCMU", 8);
		memcpy(buf + 16, "minimal-consumer", 16);
		memcpy(buf + 32, "0001", 4);
		len = 36;
	} else {
		buf[1] = cdb[2];
		switch (cdb[2]) {
		case 0x00: /* supported VPD pages */
			buf[4] = 0x00, buf[5] = 0x80, buf[6] = 0x83;
			len = 7;
			break;
		case 0x80: /* unit serial number */
			memcpy(buf + 4, serial, sizeof serial - 1);
			len = 4 + sizeof serial - 1;
			break;
		case 0x83: /* device identification: one T10 vendor ID designator */
			buf[4] = 0x02; /* code set ASCII */
			buf[5] = 0x01; /* associated with the LU, T10 vendor ID */
			buf[7] = 8 + sizeof serial - 1;
			memcpy(buf + 8, "NODETCMU", 8);
			memcpy(buf + 16, serial, sizeof serial - 1);
			len = 16 + sizeof serial - 1;
			break;
		default:
			check_condition(c, ILLEGAL_REQUEST, 0x24, 0x00);
			return;
		}
		put_be16(buf + 2, (uint16_t)(len - 4));
	}
	data_in(c, buf, len, be16(cdb + 3));
}

static void mode_sense(struct cmd *c, int ten)
{
	const uint8_t *cdb = c->cdb;
	uint8_t buf[8 + 20] = {0};
	size_t header = ten ? 8 : 4, len = header;
	uint8_t page = cdb[2] & 0x3f;
	buf[ten ? 3 : 2] = 0x10; /* device-specific: DPOFUA (FUA is honoured), not write-protected */
	if (page == 0x08 || page == 0x3f) {
		uint8_t *caching = buf + header;
		caching[0] = 0x08;
		caching[1] = 0x12;
		caching[2] = 0x04; /* WCE: sd sends SYNCHRONIZE CACHE */
		len += 20;
	}
	if (ten)
		put_be16(buf, (uint16_t)(len - 2));
	else
		buf[0] = (uint8_t)(len - 1);
	data_in(c, buf, len, ten ? be16(cdb + 7) : cdb[4]);
}

static void serve(struct cmd *c)
{
	const uint8_t *cdb = c->cdb;
	uint8_t buf[32] = {0};
	switch (cdb[0]) {
	case 0x00: /* TEST UNIT READY */
		break;
	case 0x03: /* REQUEST SENSE: nothing pending */
		fixed_sense(buf, NO_SENSE, 0x00, 0x00);
		data_in(c, buf, 18, cdb[4]);
		break;
	case 0x12:
		inquiry(c);
		break;
	case 0x25: /* READ CAPACITY(10) */
		put_be32(buf, block_count - 1 > 0xffffffffu ? 0xffffffffu : (uint32_t)(block_count - 1));
		put_be32(buf + 4, block_size);
		data_in(c, buf, 8, 8);
		break;
	case 0x9e: /* SERVICE ACTION IN(16) */
		if ((cdb[1] & 0x1f) != 0x10)
			goto invalid;
		put_be64(buf, block_count - 1); /* READ CAPACITY(16) */
		put_be32(buf + 8, block_size);
		data_in(c, buf, 32, be32(cdb + 10));
		break;
	case 0x1a:
		mode_sense(c, 0);
		break;
	case 0x5a:
		mode_sense(c, 1);
		break;
	case 0x35: /* SYNCHRONIZE CACHE(10) */
	case 0x91: /* SYNCHRONIZE CACHE(16) */
		if (fdatasync(image_fd) != 0)
			check_condition(c, MEDIUM_ERROR, 0x0C, 0x00);
		break;
	case 0x08: /* READ(6), WRITE(6): 0 blocks means 256 */
	case 0x0a:
		read_write(c, cdb[0] == 0x0a, (uint64_t)(cdb[1] & 0x1f) << 16 | be16(cdb + 2),
			   cdb[4] ? cdb[4] : 256, 0);
		break;
	case 0x28: /* READ(10), WRITE(10) */
	case 0x2a:
		read_write(c, cdb[0] == 0x2a, be32(cdb + 2), be16(cdb + 7), cdb[1] & 0x08);
		break;
	case 0xa8: /* READ(12), WRITE(12) */
	case 0xaa:
		read_write(c, cdb[0] == 0xaa, be32(cdb + 2), be32(cdb + 6), cdb[1] & 0x08);
		break;
	case 0x88: /* READ(16), WRITE(16) */
	case 0x8a:
		read_write(c, cdb[0] == 0x8a, be64(cdb + 2), be32(cdb + 10), cdb[1] & 0x08);
		break;
	default:
	invalid:
		check_condition(c, ILLEGAL_REQUEST, 0x20, 0x00); /* INVALID COMMAND OPERATION CODE */
	}
}

/* Serves one CMD entry and writes its response over the request, in place. */
static void serve_entry(char *map, struct tcmu_cmd_entry *entry)
{
	struct cmd c = {.map = map, .entry = entry, .status = GOOD};
	c.cdb = (const uint8_t *)map + entry->req.cdb_off;
	c.iov_cnt = entry->req.iov_cnt;
	if (entry->req.iov_bidi_cnt != 0) {
		check_condition(&c, ILLEGAL_REQUEST, 0x20, 0x00); /* no BIDI command is supported */
		c.iov_cnt = 0;
	} else {
		for (uint32_t i = 0; i < c.iov_cnt; i++)
			c.data_len += iov_get(&c, i).iov_len;
		serve(&c);
	}
	/* rsp overlays req: the request must not be read past this point. */
	entry->rsp.scsi_status = c.status;
	if (c.status == CHECK_CONDITION) {
		memset(entry->rsp.sense_buffer, 0, TCMU_SENSE_BUFFERSIZE);
		memcpy(entry->rsp.sense_buffer, c.sense, sizeof c.sense);
	}
	if (c.read_len_set && c.status == GOOD) {
		entry->rsp.read_len = c.read_len;
		entry->hdr.uflags |= TCMU_UFLAG_READ_LEN;
	}
}

static void on_signal(int signo) { (void)signo; stopping = 1; }

static unsigned long long number(const char *text, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 0);
	if (errno || *end || end == text || value == 0) {
		fprintf(stderr, "minimal-consumer: bad %s '%s'\n", what, text);
		exit(2);
	}
	return value;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: minimal-consumer /dev/uioN MAP_SIZE IMAGE_PATH BLOCK_SIZE BLOCK_COUNT\n");
		return 2;
	}
	size_t map_size = number(argv[2], "MAP_SIZE");
	block_size = (uint32_t)number(argv[4], "BLOCK_SIZE");
	block_count = number(argv[5], "BLOCK_COUNT");
	image_fd = open(argv[3], O_RDWR | O_CLOEXEC);
	int uio = open(argv[1], O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (image_fd < 0 || uio < 0) {
		perror(image_fd < 0 ? argv[3] : argv[1]);
		return 1;
	}
	char *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, uio, 0);
	if (map == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	struct tcmu_mailbox *mb = (struct tcmu_mailbox *)map;
	if (mb->version != TCMU_MAILBOX_VERSION) {
		fprintf(stderr, "minimal-consumer: mailbox version %u, want %u\n", mb->version, TCMU_MAILBOX_VERSION);
		return 1;
	}
	cap_read_len = (mb->flags & TCMU_MAILBOX_FLAG_CAP_READ_LEN) != 0;
	char *ring = map + mb->cmdr_off;
	uint32_t ring_size = mb->cmdr_size;
	uint32_t cursor = __atomic_load_n(&mb->cmd_tail, __ATOMIC_ACQUIRE);

	/* SIGTERM stays blocked except inside ppoll(), so it cannot be lost between checks. */
	sigset_t blocked, during_poll;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGINT);
	sigprocmask(SIG_BLOCK, &blocked, &during_poll);
	struct sigaction action = {.sa_handler = on_signal};
	sigaction(SIGTERM, &action, NULL);
	sigaction(SIGINT, &action, NULL);
	printf("ready\n");
	fflush(stdout);

	struct pollfd pfd = {.fd = uio, .events = POLLIN};
	while (!stopping) {
		if (ppoll(&pfd, 1, NULL, &during_poll) < 0) {
			if (errno == EINTR)
				continue;
			perror("ppoll");
			return 1;
		}
		uint32_t events;
		if (read(uio, &events, sizeof events) != sizeof events && errno != EAGAIN) {
			perror("read uio");
			return 1;
		}
		uint32_t head = __atomic_load_n(&mb->cmd_head, __ATOMIC_ACQUIRE);
		if (cursor == head)
			continue;
		while (cursor != head) {
			struct tcmu_cmd_entry *entry = (struct tcmu_cmd_entry *)(ring + cursor);
			switch (tcmu_hdr_get_op(entry->hdr.len_op)) {
			case TCMU_OP_PAD:
			case TCMU_OP_TMR:
				break;
			case TCMU_OP_CMD:
				serve_entry(map, entry);
				break;
			default:
				entry->hdr.uflags |= TCMU_UFLAG_UNKNOWN_OP;
			}
			cursor = (cursor + tcmu_hdr_get_len(entry->hdr.len_op)) % ring_size;
		}
		__atomic_store_n(&mb->cmd_tail, cursor, __ATOMIC_RELEASE);
		uint32_t kick = 0;
		if (write(uio, &kick, sizeof kick) != sizeof kick) {
			perror("write uio");
			return 1;
		}
	}
	munmap(map, map_size);
	close(uio);
	close(image_fd);
	return 0;
}
