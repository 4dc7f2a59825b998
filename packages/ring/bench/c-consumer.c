/*
 * Reference consumer of the TCMU ring for the benchmarks: the same protocol as
 * @tcmu/ring (acquire cmd_head, walk entries, serve, READ_LEN, release
 * cmd_tail, one kick per batch), in plain C, single thread.
 *   fd 3 = the map (memfd), fd 4 = the event channel; argv[1] = map size.
 *   argv[2] (optional) = an image file: READ(10)/WRITE(10) are then served with
 *   preadv/pwritev straight on the iovecs at LBA * 512; or "memory:BYTES": an
 *   image of BYTES in memory (calloc'd: zero pages until written, as a sparse
 *   MemoryBackend) copied to and from at LBA * 512; without it Data-In is copied
 *   from a static 1 MiB buffer and Data-Out into one (the ring's cost alone).
 * Exits when the event channel reaches end of file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

#define MAX_IOV 1024

static uint8_t source[1 << 20];
static uint8_t sink[1 << 20];

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  size_t map_size = strtoull(argv[1], NULL, 0);
  int image = -1;
  uint8_t *memory = NULL;
  size_t memory_size = 0;
  if (argc > 2 && strncmp(argv[2], "memory:", 7) == 0) {
    memory_size = strtoull(argv[2] + 7, NULL, 0);
    if ((memory = calloc(1, memory_size)) == NULL) { perror("calloc"); return 1; }
  } else if (argc > 2 && (image = open(argv[2], O_RDWR)) < 0) { perror("open"); return 1; }
  uint8_t *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
  if (map == MAP_FAILED) { perror("mmap"); return 1; }
  memset(source, 0x5a, sizeof source);
  struct tcmu_mailbox *mb = (struct tcmu_mailbox *)map;
  uint32_t cmdr_off = mb->cmdr_off, cmdr_size = mb->cmdr_size;
  uint32_t cursor = __atomic_load_n(&mb->cmd_tail, __ATOMIC_ACQUIRE);
  struct pollfd pfd = { .fd = 4, .events = POLLIN };
  struct iovec iov[MAX_IOV];
  for (;;) {
    if (poll(&pfd, 1, -1) < 0) { if (errno == EINTR) continue; perror("poll"); return 1; }
    uint32_t event;
    ssize_t n = read(4, &event, sizeof event); /* one read per wakeup */
    if (n == 0) return 0;
    uint32_t head = __atomic_load_n(&mb->cmd_head, __ATOMIC_ACQUIRE);
    if (cursor == head) continue;
    while (cursor != head) {
      struct tcmu_cmd_entry *entry = (struct tcmu_cmd_entry *)(map + cmdr_off + cursor);
      uint32_t len = tcmu_hdr_get_len(entry->hdr.len_op);
      if (tcmu_hdr_get_op(entry->hdr.len_op) == TCMU_OP_CMD) {
        uint32_t count = entry->req.iov_cnt;
        if (count > MAX_IOV) count = MAX_IOV;
        size_t total = 0;
        memcpy(iov, &entry->req.iov[0], count * sizeof iov[0]); /* packed struct: copy out */
        for (uint32_t i = 0; i < count; i++) {
          iov[i].iov_base = map + (uintptr_t)iov[i].iov_base;
          total += iov[i].iov_len;
        }
        const uint8_t *cdb = map + entry->req.cdb_off;
        int write = cdb[0] == 0x2a;
        off_t offset = (off_t)((uint32_t)cdb[2] << 24 | cdb[3] << 16 | cdb[4] << 8 | cdb[5]) * 512;
        if (image >= 0) {
          ssize_t done = write ? pwritev(image, iov, (int)count, offset) : preadv(image, iov, (int)count, offset);
          if (done != (ssize_t)total) { perror("preadv/pwritev"); return 1; }
        } else if (memory != NULL) {
          if ((size_t)offset + total > memory_size) { fputs("transfer past the image\n", stderr); return 1; }
          size_t at = (size_t)offset;
          for (uint32_t i = 0; i < count; i++) {
            if (write) memcpy(memory + at, iov[i].iov_base, iov[i].iov_len);
            else memcpy(iov[i].iov_base, memory + at, iov[i].iov_len);
            at += iov[i].iov_len;
          }
        } else {
          size_t at = 0;
          for (uint32_t i = 0; i < count; i++) {
            if (write) memcpy(sink + at % (sizeof sink - iov[i].iov_len), iov[i].iov_base, iov[i].iov_len);
            else memcpy(iov[i].iov_base, source + at % (sizeof source - iov[i].iov_len), iov[i].iov_len);
            at += iov[i].iov_len;
          }
        }
        entry->rsp.scsi_status = 0;
        entry->hdr.uflags = !write && total ? TCMU_UFLAG_READ_LEN : 0;
        entry->rsp.read_len = write ? 0 : (uint32_t)total;
      }
      cursor = (cursor + len) % cmdr_size;
    }
    __atomic_store_n(&mb->cmd_tail, cursor, __ATOMIC_RELEASE);
    event = 1;
    if (write(4, &event, sizeof event) < 0 && errno != EAGAIN) { perror("write"); return 1; }
  }
}
