/*
 * Reference consumer of the TCMU ring for the benchmark: the same protocol as
 * @tcmu/ring (acquire cmd_head, walk entries, fill Data-In from a buffer,
 * READ_LEN, release cmd_tail, one kick per batch), in plain C.
 *   fd 3 = the map (memfd), fd 4 = the event channel; argv[1] = map size.
 * Exits when the event channel reaches end of file.
 */
#include <linux/target_core_user.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint8_t source[1 << 20];

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  size_t map_size = strtoull(argv[1], NULL, 0);
  uint8_t *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
  if (map == MAP_FAILED) { perror("mmap"); return 1; }
  memset(source, 0x5a, sizeof source);
  struct tcmu_mailbox *mb = (struct tcmu_mailbox *)map;
  uint32_t cmdr_off = mb->cmdr_off, cmdr_size = mb->cmdr_size;
  uint32_t cursor = __atomic_load_n(&mb->cmd_tail, __ATOMIC_ACQUIRE);
  struct pollfd pfd = { .fd = 4, .events = POLLIN };
  for (;;) {
    if (poll(&pfd, 1, -1) < 0) { if (errno == EINTR) continue; perror("poll"); return 1; }
    uint32_t event;
    ssize_t n;
    while ((n = read(4, &event, sizeof event)) == sizeof event) {}
    if (n == 0) return 0;
    uint32_t head = __atomic_load_n(&mb->cmd_head, __ATOMIC_ACQUIRE);
    if (cursor == head) continue;
    while (cursor != head) {
      struct tcmu_cmd_entry *entry = (struct tcmu_cmd_entry *)(map + cmdr_off + cursor);
      uint32_t len = tcmu_hdr_get_len(entry->hdr.len_op);
      if (tcmu_hdr_get_op(entry->hdr.len_op) == TCMU_OP_CMD) {
        uint32_t produced = 0, count = entry->req.iov_cnt;
        for (uint32_t i = 0; i < count; i++) {
          struct iovec iov_copy;
          memcpy(&iov_copy, &entry->req.iov[i], sizeof iov_copy); /* packed struct: no unaligned pointer */
          struct iovec *iov = &iov_copy;
          memcpy(map + (uintptr_t)iov->iov_base, source + produced, iov->iov_len);
          produced += iov->iov_len;
        }
        entry->rsp.scsi_status = 0;
        entry->hdr.uflags = produced ? TCMU_UFLAG_READ_LEN : 0;
        entry->rsp.read_len = produced;
      }
      cursor = (cursor + len) % cmdr_size;
    }
    __atomic_store_n(&mb->cmd_tail, cursor, __ATOMIC_RELEASE);
    event = 1;
    if (write(4, &event, sizeof event) < 0 && errno != EAGAIN) { perror("write"); return 1; }
  }
}
