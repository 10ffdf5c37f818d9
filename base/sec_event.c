#include <string.h>

#include "sec_event.h"

static const char *const type_names[SEC_EVENT_TYPE_COUNT] = {
    [SEC_FAILED_ACL] = "FailedACL",
    [SEC_INVALID_ACCOUNT_ID] = "InvalidAccountID",
    [SEC_SESSION_LIMIT] = "SessionLimit",
    [SEC_MEMORY_LIMIT] = "MemoryLimit",
    [SEC_LOAD_AVERAGE_LIMIT] = "LoadAverageLimit",
    [SEC_REQUEST_NOT_SUPPORTED] = "RequestNotSupported",
    [SEC_REQUEST_NOT_ALLOWED] = "RequestNotAllowed",
    [SEC_AUTH_METHOD_NOT_ALLOWED] = "AuthMethodNotAllowed",
    [SEC_REQUEST_BAD_FORMAT] = "RequestBadFormat",
    [SEC_SUCCESSFUL_AUTH] = "SuccessfulAuth",
    [SEC_UNEXPECTED_ADDRESS] = "UnexpectedAddress",
    [SEC_CHALLENGE_RESPONSE_FAILED] = "ChallengeResponseFailed",
    [SEC_INVALID_PASSWORD] = "InvalidPassword",
    [SEC_CHALLENGE_SENT] = "ChallengeSent",
    [SEC_INVALID_TRANSPORT] = "InvalidTransport",
};

const char *sec_event_type_name(enum sec_event_type type)
{
    if ((unsigned)type >= SEC_EVENT_TYPE_COUNT)
        return NULL;
    return type_names[type];
}

int sec_event_type_from_name(const char *name, size_t len)
{
    for (int i = 0; i < SEC_EVENT_TYPE_COUNT; i++) {
        if (strlen(type_names[i]) == len && memcmp(type_names[i], name, len) == 0)
            return i;
    }
    return -1;
}

const char *sec_transport_name(enum sec_transport t)
{
    switch (t) {
    case SEC_TRANSPORT_UDP:
        return "UDP";
    case SEC_TRANSPORT_TCP:
        return "TCP";
    case SEC_TRANSPORT_TLS:
        return "TLS";
    case SEC_TRANSPORT_WS:
        return "WS";
    case SEC_TRANSPORT_WSS:
        return "WSS";
    case SEC_TRANSPORT_NONE:
        break;
    }
    return "";
}
