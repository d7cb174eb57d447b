/*
 * Model files mapped into memory, so the runtime uses stored tensor bytes where they lie instead of
 * reading copies into JavaScript buffers: a float tensor (embedding, LM head) is used in place, and
 * ternary codes are repacked straight from the mapping into the compute layout.
 *
 * mapFile(path[, fd]) → ArrayBuffer over a read-only private mapping of the whole file. Given `fd`, an
 * open descriptor of it, that descriptor is mapped (the very file a reader has checked, even if the path
 * was replaced since) and left open; otherwise the path is opened and the descriptor closed at once (the
 * mapping keeps the file's pages reachable). The buffer's finalizer unmaps it when the last view into
 * it is collected. The buffer is tagged so that dropPages can prove a view lies in
 * one of these mappings before it gives the kernel advice that would zero anonymous memory.
 *
 * The pages are PROT_READ: JavaScript cannot mark a typed array read-only, so a write through a view
 * faults. The runtime keeps the views inside prepared weights and never writes them. Like any mmap, a
 * file truncated while mapped makes reads past its new end raise SIGBUS: the callers check every
 * tensor's range against the mapped length before making a view, which covers a file that shrank
 * before mapFile, not one that shrinks later.
 *
 * A file system that cannot map the file makes mapFile throw with the code TP_MMAP_UNSUPPORTED; the
 * runtime reads that file instead. Other failures throw without a code.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Marks the ArrayBuffers that mapFile made (napi_type_tag_object). */
static const napi_type_tag FILE_MAPPING_TAG = { 0x7470b1f3c0de6d61ULL, 0x6d6170706564f11eULL };

typedef struct { void *base; size_t length; } file_mapping;

static void unmap_file(napi_env env, void *data, void *hint) {
  (void)env; (void)data;
  file_mapping *m = hint;
  munmap(m->base, m->length);
  free(m);
}

/* Throws "<path>: <what> (<reason>)", one line naming the file, with `code` as the error's code (or
 * none), and returns NULL. */
static napi_value fail(napi_env env, const char *path, const char *what, const char *reason, const char *code) {
  char msg[4200];
  snprintf(msg, sizeof msg, "%s: %s (%s)", path, what, reason);
  napi_throw_error(env, code, msg);
  return NULL;
}

/*
 * The code of an mmap failure that says this file system does not map this file (a FUSE or network
 * file system without mmap, sysfs-like files), where reading it works: ENODEV, EINVAL (the arguments
 * are valid for any regular file), EACCES/EPERM (the descriptor is open for reading), EOPNOTSUPP.
 * The caller reads such a file instead. Anything else (ENOMEM, ENFILE, …) is a real error.
 */
#define MMAP_UNSUPPORTED "TP_MMAP_UNSUPPORTED"
static const char *mmap_failure_code(int err) {
  return err == ENODEV || err == EINVAL || err == EACCES || err == EPERM || err == EOPNOTSUPP ? MMAP_UNSUPPORTED : NULL;
}

static napi_value tagged(napi_env env, napi_value buffer) {
  if (napi_type_tag_object(env, buffer, &FILE_MAPPING_TAG) != napi_ok) {
    napi_throw_error(env, NULL, "mapFile: cannot tag the mapping's buffer");
    return NULL;
  }
  return buffer;
}

/*
 * mapFile(path[, fd]) → ArrayBuffer of the file's bytes; `path` names the file in errors. MADV_WILLNEED
 * starts reading the whole file ahead in the background: every weight is used (repacked, hashed or
 * streamed per token), so a cold file arrives in large sequential reads instead of page faults one by one. No huge-page advice: file pages
 * come from the page cache, which a private read-only mapping shares rather than copies.
 */
napi_value tp_js_map_file(napi_env env, napi_callback_info info) {
  size_t argc = 2, len;
  napi_value argv[2], buffer;
  napi_valuetype fd_type = napi_undefined;
  char path[4096];
  int fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len + 1 >= sizeof path ||
      (argc >= 2 && napi_typeof(env, argv[1], &fd_type) != napi_ok) ||
      (fd_type != napi_undefined && (napi_get_value_int32(env, argv[1], &fd) != napi_ok || fd < 0))) {
    napi_throw_type_error(env, NULL, "mapFile: the path must be a string shorter than 4096 bytes, the descriptor a non-negative int");
    return NULL;
  }
  const int own_fd = fd < 0;
  if (own_fd && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return fail(env, path, "cannot open", strerror(errno), NULL);
  struct stat st;
  const char *problem = NULL, *reason = NULL, *code = NULL;
  void *base = MAP_FAILED;
  if (fstat(fd, &st) != 0) {
    problem = "cannot stat";
    reason = strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    problem = "cannot map";
    reason = S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file";
  } else if (st.st_size > 0 && (base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
    problem = "cannot map";
    reason = strerror(errno);
    code = mmap_failure_code(errno);
  }
  if (own_fd) close(fd);
  if (problem) return fail(env, path, problem, reason, code);
  const size_t length = (size_t)st.st_size;
  if (length == 0) /* mmap refuses empty ranges; an empty file is an empty buffer */
    return napi_create_arraybuffer(env, 0, NULL, &buffer) == napi_ok ? tagged(env, buffer) : NULL;
  madvise(base, length, MADV_WILLNEED); /* advice only */
  file_mapping *m = malloc(sizeof *m);
  if (!m) {
    munmap(base, length);
    return fail(env, path, "cannot map", strerror(ENOMEM), NULL);
  }
  m->base = base;
  m->length = length;
  if (napi_create_external_arraybuffer(env, base, length, unmap_file, m, &buffer) != napi_ok) {
    munmap(base, length);
    free(m);
    napi_throw_error(env, NULL, "mapFile: external buffers unavailable");
    return NULL;
  }
  return tagged(env, buffer);
}

/*
 * dropPages(view) → whether `view` lies in a mapFile mapping; if it does, the pages wholly inside it
 * leave this process's resident set (MADV_DONTNEED). For a private read-only file mapping that loses
 * nothing: the pages stay in the page cache and a later read maps them again. The backend calls it on
 * ternary codes once they are repacked, so a model's file does not stay resident twice. Any other
 * buffer is left alone (on anonymous memory the same advice would zero it).
 */
napi_value tp_js_drop_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1, length, offset;
  napi_value argv[1], buffer, result;
  napi_typedarray_type type;
  void *data;
  bool is_array = false, is_mapping = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_is_typedarray(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &data, &buffer, &offset) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "dropPages: the view must be a Uint8Array");
    return NULL;
  }
  if (napi_check_object_type_tag(env, buffer, &FILE_MAPPING_TAG, &is_mapping) != napi_ok) is_mapping = false;
  if (is_mapping && length > 0) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = ((uintptr_t)data + page - 1) / page * page, end = ((uintptr_t)data + length) / page * page;
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
  }
  return napi_get_boolean(env, is_mapping, &result) == napi_ok ? result : NULL;
}
