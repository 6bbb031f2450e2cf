#include <libmnl/libmnl.h>
/* rtnetlink(7) message types, groups and attribute numbers for the route/link/address
 * messages libmnl walks (RTM_*, RTMGRP_*, IFLA_*, IFA_*, RTA_*, struct ifinfomsg/ifaddrmsg/rtmsg). */
#include <linux/rtnetlink.h>
