/* err.c - the error table behind ss_strerror(). */
#include <stdlib.h>

#include "seeswarm.h"

const char *ss_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define SS__ERR_CASE(name, val, msg)                                       \
	case SS_##name:                                                     \
		return msg;
		SS_ERRNO_MAP(SS__ERR_CASE)
#undef SS__ERR_CASE
	default:
		return "unknown error";
	}
}

void ss_free(void *p)
{
	free(p);
}
