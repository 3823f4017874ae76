getent group mysqlrouter >/dev/null || groupadd -r mysqlrouter
getent passwd mysqlrouter >/dev/null || useradd -r -g mysqlrouter -d /var/lib/mysqlrouter -s /sbin/nologin -c "MySQL Router" mysqlrouter
exit 0
