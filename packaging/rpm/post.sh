install -d -o mysqlrouter -g mysqlrouter -m 0750 /var/log/mysqlrouter /var/lib/mysqlrouter
systemd-tmpfiles --create /usr/lib/tmpfiles.d/mysqlrouter.conf >/dev/null 2>&1 || :
if [ $1 -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl preset mysqlrouter.service >/dev/null 2>&1 || :
fi
exit 0
