/*
 * bundle_tar.c - unpacking a tar bundle into a directory (exec_bundle_unpack_tar).
 *
 * A tar is hostile input. libarchive parses it (ustar, pax and GNU tar,
 * plain or gzip); this file decides what may land on disk:
 *   - entry paths are relative, without "." or ".." components or control
 *     bytes, at most EXEC_PATH_MAX bytes and EXEC_BUNDLE_MAX_DEPTH deep;
 *   - only directories, regular files and symbolic links; hard links,
 *     devices, fifos and sockets are refused;
 *   - every file is created with O_EXCL below parents opened one component
 *     at a time with O_NOFOLLOW, so no entry can write through a symbolic
 *     link (or replace anything) that an earlier entry created;
 *   - modes keep only the permission bits (0777): set-id and sticky bits are
 *     dropped;
 *   - at most EXEC_BUNDLE_MAX_FILES entries and EXEC_BUNDLE_MAX_BYTES of data.
 * The bundle's identity is then the digest of the unpacked tree
 * (exec_bundle_digest), the same as for a directory bundle.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "agent/exec/exec.h"

#define TAR_BLOCK 65536

struct unpack {
	int root;                   /* fd of the destination directory */
	uint64_t bytes;
	size_t entries;
	char *why;
	size_t whylen;
};

/* Writes why and returns rc. */
static int fail(struct unpack *u, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct unpack *u, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(u->why, u->whylen, fmt, ap);
	va_end(ap);
	return rc;
}

/* True for a path component we accept: not empty, ".", "..", no control bytes. */
static bool component_ok(const char *s, size_t n)
{
	if (n == 0 || n > 255 || (n == 1 && s[0] == '.') ||
	    (n == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/*
 * Opens the parent directory of path (relative, already checked), creating
 * missing directories (0755) on the way and never following a symbolic
 * link. *leaf points into path at the last component. Returns an fd or -1.
 */
static int open_parent(struct unpack *u, char *path, const char **leaf)
{
	int dfd = dup(u->root);
	char *p = path;
	for (char *slash; dfd >= 0 && (slash = strchr(p, '/')) != NULL; p = slash + 1) {
		*slash = '\0';
		int next = openat(dfd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && mkdirat(dfd, p, 0755) == 0) {
			next = openat(dfd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next >= 0 && fchmod(next, 0755) != 0) { /* whatever the umask */
				close(next);
				next = -1;
			}
		}
		*slash = '/';
		close(dfd);
		dfd = next;
	}
	*leaf = p;
	return dfd;
}

static int write_file(struct unpack *u, struct archive *a, int dfd, const char *leaf,
		      const char *path, mode_t mode)
{
	int rc = 0;
	char *block = NULL;
	int fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(u, errno == EEXIST ? SS_EPOLICY : SS_EIO,
			    errno == EEXIST ? "entry %s appears twice" : "cannot create %s", path);
	block = xmalloc(TAR_BLOCK);
	for (;;) {
		la_ssize_t n = archive_read_data(a, block, TAR_BLOCK);
		if (n < 0) {
			rc = fail(u, SS_EPARSE, "the data of %s is damaged", path);
			break;
		}
		if (n == 0)
			break;
		u->bytes += (uint64_t)n;
		if (u->bytes > EXEC_BUNDLE_MAX_BYTES) {
			rc = fail(u, SS_ELIMIT, "the bundle is larger than 1 GiB (at %s)", path);
			break;
		}
		if ((rc = fd_write_all(fd, block, (size_t)n)) != 0) {
			rc = fail(u, SS_EIO, "cannot write %s", path);
			break;
		}
	}
	if (rc == 0 && fchmod(fd, mode & 0777) != 0)
		rc = fail(u, SS_EIO, "cannot set the mode of %s", path);
	close(fd);
	free(block);
	return rc;
}

/* Puts one entry in place. */
static int unpack_entry(struct unpack *u, struct archive *a, struct archive_entry *e)
{
	const char *name = archive_entry_pathname(e);
	mode_t type = archive_entry_filetype(e);
	mode_t mode = archive_entry_perm(e);
	int rc = 0;
	if (!name)
		return fail(u, SS_EPARSE, "an entry has no name");
	while (name[0] == '.' && name[1] == '/')
		name += 2;
	char *path = xstrdup(name);
	size_t len = strlen(path);
	while (len > 0 && path[len - 1] == '/')
		path[--len] = '\0';
	if (len == 0 || !strcmp(path, ".")) {
		/* The root itself: only its mode. */
		if (type != AE_IFDIR)
			rc = fail(u, SS_EPOLICY, "the root entry %s is not a directory", name);
		else if (fchmod(u->root, mode & 0777) != 0)
			rc = fail(u, SS_EIO, "cannot set the mode of the root");
		goto out;
	}
	size_t depth = 1;
	bool ok = path[0] != '/' && len <= EXEC_PATH_MAX;
	for (const char *c = path; ok;) {
		const char *slash = strchr(c, '/');
		size_t n = slash ? (size_t)(slash - c) : strlen(c);
		ok = component_ok(c, n);
		if (!slash)
			break;
		c = slash + 1;
		depth++;
	}
	if (!ok) {
		rc = fail(u, SS_EPOLICY, "entry %.200s: the path must be relative, without . or .. components or control bytes",
			  name);
		goto out;
	}
	if (depth > EXEC_BUNDLE_MAX_DEPTH) {
		rc = fail(u, SS_ELIMIT, "entry %.200s is nested too deep", name);
		goto out;
	}
	if (archive_entry_hardlink(e)) {
		rc = fail(u, SS_EPOLICY, "entry %.200s is a hard link; only files, directories and symbolic links", path);
		goto out;
	}
	const char *leaf;
	int dfd = open_parent(u, path, &leaf);
	if (dfd < 0) {
		rc = fail(u, SS_EPOLICY, "entry %.200s lies below a symbolic link or a file", path);
		goto out;
	}
	struct stat st;
	switch (type) {
	case AE_IFDIR:
		if (mkdirat(dfd, leaf, mode & 0777) != 0 &&
		    (errno != EEXIST || fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		     !S_ISDIR(st.st_mode)))
			rc = fail(u, SS_EPOLICY, "directory %.200s clashes with another entry", path);
		else if (fchmodat(dfd, leaf, mode & 0777, 0) != 0)
			rc = fail(u, SS_EIO, "cannot set the mode of %.200s", path);
		break;
	case AE_IFREG:
		rc = write_file(u, a, dfd, leaf, path, mode);
		break;
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);
		size_t tl = target ? strlen(target) : 0;
		bool tok = tl > 0 && tl <= EXEC_PATH_MAX;
		for (size_t i = 0; tok && i < tl; i++)
			tok = (unsigned char)target[i] >= 0x20 && target[i] != 0x7f;
		if (!tok)
			rc = fail(u, SS_EPOLICY, "symbolic link %.200s has an empty, long or unprintable target", path);
		else if (symlinkat(target, dfd, leaf) != 0)
			rc = fail(u, errno == EEXIST ? SS_EPOLICY : SS_EIO,
				  errno == EEXIST ? "entry %.200s appears twice" : "cannot create %.200s", path);
		break;
	}
	default:
		rc = fail(u, SS_EPOLICY, "entry %.200s is a device, fifo or socket; only files, directories and symbolic links",
			  path);
		break;
	}
	close(dfd);
out:
	free(path);
	return rc;
}

static int unpack(struct archive *a, const char *dest, char *why, size_t whylen)
{
	struct unpack u = {.root = -1, .why = why, .whylen = whylen};
	struct archive_entry *e;
	int rc = 0;
	why[0] = '\0';
	if (mkdir(dest, 0755) != 0) {
		snprintf(why, whylen, "cannot create %s: %s", dest, strerror(errno));
		return SS_EIO;
	}
	u.root = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (u.root < 0 || fchmod(u.root, 0755) != 0) {
		snprintf(why, whylen, "cannot open %s", dest);
		rc = SS_EIO;
		goto out;
	}
	for (;;) {
		int r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			snprintf(why, whylen, "not a valid tar: %.200s",
				 archive_error_string(a) ? archive_error_string(a) : "unreadable");
			rc = SS_EPARSE;
			break;
		}
		if (++u.entries > EXEC_BUNDLE_MAX_FILES) {
			snprintf(why, whylen, "more than %d entries", EXEC_BUNDLE_MAX_FILES);
			rc = SS_ELIMIT;
			break;
		}
		if ((rc = unpack_entry(&u, a, e)) != 0)
			break;
	}
out:
	if (u.root >= 0)
		close(u.root);
	if (rc && dir_remove_tree(dest) != 0)
		log_warn("bundle: cannot remove the partial %s", dest);
	return rc;
}

static struct archive *reader(void)
{
	struct archive *a = archive_read_new();
	if (!a)
		fatal("archive_read_new: out of memory");
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_filter_gzip(a);
	return a;
}

/* Unpacks from an archive opened with open_rc (libarchive's status), then frees it. */
static int unpack_opened(struct archive *a, int open_rc, const char *what, const char *dest, char *why,
			 size_t whylen)
{
	int rc;
	if (open_rc != ARCHIVE_OK) {
		snprintf(why, whylen, "cannot read %s as a tar: %.200s", what,
			 archive_error_string(a) ? archive_error_string(a) : "unreadable");
		rc = SS_EPARSE;
	} else {
		rc = unpack(a, dest, why, whylen);
	}
	archive_read_free(a);
	return rc;
}

int exec_bundle_unpack_tar(const char *tar_path, const char *dest, char *why, size_t whylen)
{
	struct archive *a = reader();
	return unpack_opened(a, archive_read_open_filename(a, tar_path, TAR_BLOCK), tar_path, dest, why,
			     whylen);
}

int exec_bundle_unpack_tar_mem(const void *data, size_t len, const char *dest, char *why,
			       size_t whylen)
{
	struct archive *a = reader();
	return unpack_opened(a, archive_read_open_memory(a, data, len), "the data", dest, why, whylen);
}
