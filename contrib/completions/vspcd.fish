function __vspcd_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __vspcd_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __vspcd_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __vspcd_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __vspcd_parse_tokens -S
    set -l unparsed_tokens (__vspcd_tokens -pc)
    switch $unparsed_tokens[1]
    case 'vspcd'
        __vspcd_parse_subcommand 0 'config=' 'proxy=' 'admin=' 'listen-host=' 'port-range-start=' 'port-range-end=' 'vm-expire-time=' 'db=' 'service-uri=' 'ssl' 'ssl-cert=' 'ssl-key=' 'vmotion-timeout=' 'proxy-allow=' 'vm-stuck-timeout=' 'takeover-probe-timeout=' 'disconnect-backlog=' 'skip-backlog=' 'identify-timeout=' 'proxy-max-unidentified=' 'proxy-max-unidentified-per-address=' 'new-ports-per-minute=' 'port-reserve-percent=' 'ssh=' 'ssh-host-key=' 'ssh-authorized-keys=' 'telnet-ports=' 'http=' 'http-allow=' 'http-cert=' 'http-key=' 'http-client-ca=' 'http-public-url=' 'web-assets=' 'metrics=' 'console-log-dir=' 'console-log-group=' 'console-log-max-bytes=' 'console-log-keep=' 'console-log-max-age-days=' 'watch=+' 'scrollback=' 'replay=' 'event-max-age-days=' 'event-max-count=' 'v/verbose' 'd/debug' 'log-format=' 'ssh-max-startups=' 'ssh-per-source-max-startups=' 'ssh-per-source-max-failures=' 'ssh-idle-timeout=' 'ssh-keepalive-interval=' 'ssh-keepalive-count-max=' 'node=' 'lease-timeout=' 'cluster-listen=' 'cluster-cert=' 'cluster-key=' 'cluster-ca=' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __vspcd_parse_subcommand -r 1 'version'
        end
    end
end

function __vspcd_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __vspcd_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __vspcd_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __vspcd_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__vspcd_tokens -p)
    if test -z "$(__vspcd_tokens -t)"
        set -l index (count (__vspcd_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'vspcd' -f
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" config' -l 'config' -d 'TOML file of settings, keys named as these flags (ssl = true); flags override it. SIGHUP re-reads it.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" proxy' -l 'proxy' -d 'Proxy address for ESXi, [host]:port. (default: :6779)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" admin' -l 'admin' -d 'Admin endpoint (vspc list/tail), [host]:port, or unix:PATH for a Unix socket (0660). (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" listen-host' -l 'listen-host' -d 'Address the per-VM telnet ports listen on. (default: 127.0.0.1)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" port-range-start' -l 'port-range-start' -d 'First port of the per-VM range (outside Linux\'s ephemeral range 32768-60999). (default: 20000)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" port-range-end' -l 'port-range-end' -d 'Last port of the per-VM range. (default: 32767)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" vm-expire-time' -l 'vm-expire-time' -d 'Seconds without VM and without client after which a VM\'s port returns to the pool. (default: 86400)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" db' -l 'db' -d 'SQLite database file, or a postgresql:// URL shared by several daemons (a cluster). (default: vspcd.db)' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" service-uri' -l 'service-uri' -d 'Service URI accepted in ESXi\'s DO-PROXY (its ?port=LABEL suffix names a serial port). (default: vSPC.py)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssl' -l 'ssl' -d 'TLS on the proxy port (ESXi\'s telnets://). Needs --ssl-cert and --ssl-key.'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssl-cert' -l 'ssl-cert' -d 'PEM certificate (chain) for --ssl.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssl-key' -l 'ssl-key' -d 'PEM private key for --ssl.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" vmotion-timeout' -l 'vmotion-timeout' -d 'Seconds a vMotion may take between GOAHEAD and COMPLETE before it is dropped. (default: 30)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" proxy-allow' -l 'proxy-allow' -d 'Networks ESXi hosts may connect from (IPv4 and IPv6); others are closed before any negotiation. Default: anywhere. SIGHUP applies a change.' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" vm-stuck-timeout' -l 'vm-stuck-timeout' -d 'Seconds a VM connection may leave what it is sent unread before it is closed. (default: 60)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" takeover-probe-timeout' -l 'takeover-probe-timeout' -d 'Seconds a console\'s connection has to answer a probe when another connection claims the same VM serial port. (default: 5)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" disconnect-backlog' -l 'disconnect-backlog' -d 'Bytes a reader on a byte-exact door (telnet ports, vspc tail -f) may fall behind before it is disconnected (recorded). (default: 1048576)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" skip-backlog' -l 'skip-backlog' -d 'Bytes a reader on a door that shows notices (SSH) may fall behind; past it the oldest unsent bytes are skipped for that reader, with a marker. (default: 1048576)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" identify-timeout' -l 'identify-timeout' -d 'Seconds a new proxy connection has to identify itself (ESXi takes milliseconds). (default: 15)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" proxy-max-unidentified' -l 'proxy-max-unidentified' -d 'Proxy connections not identified yet, in all; more are refused at once. (default: 256)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" proxy-max-unidentified-per-address' -l 'proxy-max-unidentified-per-address' -d 'Proxy connections not identified yet from one address; more are refused at once. (default: 64)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" new-ports-per-minute' -l 'new-ports-per-minute' -d 'New port assignments one address may cause per minute; more are refused and recorded. (default: 600)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" port-reserve-percent' -l 'port-reserve-percent' -d 'Percent of the port range kept for addresses that already own assignments. (default: 10)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh' -l 'ssh' -d 'SSH front door for people, [host]:port (off by default; suggested :6781). `ssh -p 6781 VM@host` attaches to VM\'s console.' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh-host-key' -l 'ssh-host-key' -d 'SSH host key (ed25519, created 0600 on first start). Default: ssh_host_ed25519_key beside the database.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh-authorized-keys' -l 'ssh-authorized-keys' -d 'OpenSSH authorized_keys for --ssh (options vms="glob,..." and read-only). Default: authorized_keys beside the database. Reloaded on SIGHUP and when it changes.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" telnet-ports' -l 'telnet-ports' -d 'The per-VM telnet ports: read-write (as vSPC.py), read-only, or off. (default: read-write)' -rfka 'read-write read-only off'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" http' -l 'http' -d 'The HTTP listener: /console_log/<uuid> (for OpenStack Nova), /metrics, /healthz, /readyz, the JSON API /api/v1 and the browser console of vspc url (off by default; suggested 127.0.0.1:9779; a bare :port is on loopback).' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" http-allow' -l 'http-allow' -d 'Who may use the HTTP listener: CIDR[,CIDR...], or any. (default: 127.0.0.0/8,::1)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" http-cert' -l 'http-cert' -d 'PEM certificate (chain): the HTTP listener speaks HTTPS only. Needs --http-key.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" http-key' -l 'http-key' -d 'PEM private key for --http-cert.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" http-client-ca' -l 'http-client-ca' -d 'PEM CA certificate(s): HTTPS clients must show a certificate it signed; its subject is the person in the API\'s audit.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" http-public-url' -l 'http-public-url' -d 'The base of console URLs (vspc url) when vspcd sits behind a reverse proxy, e.g. https://vspc.example.com; its origin may open console WebSockets. Default: the --http listener\'s own address.' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" web-assets' -l 'web-assets' -d 'Where the browser console\'s terminal emulator (xterm.js, bundled at install) is read from. (default: /usr/local/share/vspcd/web)' -rfa '(__vspcd_complete_directories)'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" metrics' -l 'metrics' -d 'The same as --http (kept for existing set-ups).' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" console-log-dir' -l 'console-log-dir' -d 'Where every byte each console printed is kept, one file per VM serial port named by its uuid (32 hex digits, as OpenStack Nova reads them), or off. Default: consoles/ beside the database.' -rfa '(__vspcd_complete_directories)'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" console-log-group' -l 'console-log-group' -d 'A group that may read the console logs (files 0640, folder 0750); without it they are 0600 and 0700.' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" console-log-max-bytes' -l 'console-log-max-bytes' -d 'A console log is rotated when it reaches this many bytes. (default: 10485760)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" console-log-keep' -l 'console-log-keep' -d 'Rotated console logs kept per serial port (.1 newest). (default: 5)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" console-log-max-age-days' -l 'console-log-max-age-days' -d 'Delete the logs of consoles silent for longer than this (0 = never). (default: 30)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd"' -l 'watch' -d 'A console line matching REGEX (POSIX extended, as grep -E) records a console-match event and counts in vspc_console_matches_total{pattern=NAME}. Repeatable.' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" scrollback' -l 'scrollback' -d 'Scrollback kept per VM serial port, in bytes (0 = off). (default: 65536)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" replay' -l 'replay' -d 'Bytes of scrollback replayed to a telnet client when it attaches (0 = off). (default: 0)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" event-max-age-days' -l 'event-max-age-days' -d 'Keep events for this many days (0 = forever). (default: 90)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" event-max-count' -l 'event-max-count' -d 'Keep at most this many events (0 = no limit). (default: 1000000)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" v verbose' -s 'v' -l 'verbose' -d 'Log connections and assignments (info level).'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" d debug' -s 'd' -l 'debug' -d 'Log everything, including protocol detail (debug level).'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" log-format' -l 'log-format' -d 'Log lines as text (with a syslog priority prefix, for journald) or json (one object per line). (default: text)' -rfka 'text json'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh-max-startups' -l 'ssh-max-startups' -d 'SSH connections waiting to authenticate: past start, new ones are refused with probability rate% rising to 100% at full (OpenSSH\'s MaxStartups). (default: 10:30:64)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh-per-source-max-startups' -l 'ssh-per-source-max-startups' -d 'SSH connections one address (an IPv6 /64) may have waiting to authenticate. (default: 8)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh-per-source-max-failures' -l 'ssh-per-source-max-failures' -d 'Failed SSH attempts one address (an IPv6 /64) may make in a minute before its new connections are refused (0 = no limit). (default: 10)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh-idle-timeout' -l 'ssh-idle-timeout' -d 'Seconds an SSH session may see neither input nor output before it is ended with a notice (0 = never). (default: 0)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh-keepalive-interval' -l 'ssh-keepalive-interval' -d 'Seconds between keepalives to an SSH client (0 = none). (default: 15)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" ssh-keepalive-count-max' -l 'ssh-keepalive-count-max' -d 'Keepalives in a row an SSH client may leave unanswered before it is dropped. (default: 3)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" node' -l 'node' -d 'This daemon\'s name among the daemons sharing a PostgreSQL --db. Default: the host name.' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" lease-timeout' -l 'lease-timeout' -d 'Seconds after its last heartbeat that a daemon of a cluster is dead and its consoles go to the others. (default: 10)' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" cluster-listen' -l 'cluster-listen' -d 'The internal link between the daemons of a cluster, [host]:port. Default: the --listen-host host, port 6782. In the clear only on loopback; elsewhere give --cluster-cert, --cluster-key and --cluster-ca.' -rfka ''
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" cluster-cert' -l 'cluster-cert' -d 'PEM certificate (chain) of this daemon on the cluster link (TLS 1.2+, mutual). Needs --cluster-key and --cluster-ca.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" cluster-key' -l 'cluster-key' -d 'PEM private key for --cluster-cert.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" cluster-ca' -l 'cluster-ca' -d 'PEM CA certificate(s) that signed every daemon\'s --cluster-cert: both ends of the link must show one.' -rF
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" version' -l 'version' -d 'Show the version.'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_positional "vspcd" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'vspcd' -n '__vspcd_should_offer_completions_for_flags_or_options "vspcd help" version' -l 'version' -d 'Show the version.'
