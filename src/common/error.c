/*
 * error.c — rh_strerror(), generated from the RH_ERRNO_MAP X-macro in the public header so that codes
 * and messages cannot drift apart.
 */
#include "config.h"

#include <string.h>

#include <rehydrate/rehydrate.h>

RH_EXPORT const char *rh_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case RH_NOT_A_STUB:
        return "not a stub (the file carries no reparse point)";
#define RH_ERR_CASE(name, value, msg)                                                               \
    case name:                                                                                     \
        return msg;
        RH_ERRNO_MAP(RH_ERR_CASE)
#undef RH_ERR_CASE
    default:
        break;
    }
    if (code < 0 && code > -4000)
        return strerror(-code);
    return "unknown error";
}

RH_EXPORT const char *rh_version(void) { return RH_VERSION_STRING; }
RH_EXPORT unsigned rh_version_number(void) { return RH_VERSION_NUMBER; }
