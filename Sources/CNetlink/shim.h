#include <netlink/netlink.h>
