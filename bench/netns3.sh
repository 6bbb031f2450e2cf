# Sourced by bench/socks-count.sh and bench/visor-load.sh: the three-namespace shape (a client, an
# exit, an "internet" host) and the "internet" host's web server.

# netns3_up C S N LINK NET: namespaces C, S and N; veth LINKc(C)--LINKs(S) on NET.0/24 (C .1, S .2)
# and LINKx(S)--LINKn(N) on 203.0.113.0/24 (S .1, N .2, N's default route via S).
netns3_up() {
    local c=$1 s=$2 n=$3 k=$4 net=$5 ns l
    for ns in $c $s $n; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    ip link add ${k}c netns $c type veth peer name ${k}s netns $s
    ip link add ${k}x netns $s type veth peer name ${k}n netns $n
    ip -n $c addr add $net.1/24 dev ${k}c; ip -n $s addr add $net.2/24 dev ${k}s
    ip -n $s addr add 203.0.113.1/24 dev ${k}x; ip -n $n addr add 203.0.113.2/24 dev ${k}n
    for l in "$c ${k}c" "$s ${k}s" "$s ${k}x" "$n ${k}n"; do set -- $l; ip -n "$1" link set "$2" up; done
    ip -n $n route add default via 203.0.113.1
}

# nginx_www DIR NS ADDR [KB]: nginx in namespace NS serving DIR/www (with a small.txt of KB KiB,
# default 1, of base64 text) on ADDR:80 (sendfile, keepalive, no access log; its pid file, logs and
# temp files in DIR/nginx), in the background; prints nothing and leaves its pid in NGINX_PID.
nginx_www() {
    local dir=$1 ns=$2 addr=$3 kb=${4:-1}
    mkdir -p "$dir/www" "$dir/nginx"
    chmod 755 "$dir"  # nginx's worker (www-data) reads www/
    # (Through a file: `base64 | head -c` would end base64 with SIGPIPE, fatal under pipefail.)
    head -c $((kb * 768)) /dev/urandom | base64 -w 64 >"$dir/random.b64"
    head -c $((kb * 1024)) "$dir/random.b64" >"$dir/www/small.txt"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; keepalive_requests 100000;
  client_body_temp_path $dir/nginx; proxy_temp_path $dir/nginx;
  fastcgi_temp_path $dir/nginx; uwsgi_temp_path $dir/nginx; scgi_temp_path $dir/nginx;
  server { listen $addr:80; root $dir/www; }
}
EOF
    ip netns exec "$ns" nginx -c "$dir/nginx.conf" -p "$dir/nginx" >/dev/null 2>&1 &
    NGINX_PID=$!
}
