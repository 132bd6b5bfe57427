function __vspc_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __vspc_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __vspc_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __vspc_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __vspc_parse_tokens -S
    set -l unparsed_tokens (__vspc_tokens -pc)
    switch $unparsed_tokens[1]
    case 'vspc'
        __vspc_parse_subcommand 0 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'list'
            __vspc_parse_subcommand 0 'admin=' 'debug' 'json' 'table' 'version' 'h/help'
        case 'history'
            __vspc_parse_subcommand 1 'admin=' 'debug' 'db=' 'since=' 'limit=' 'json' 'refused' 'version' 'h/help'
        case 'tail'
            __vspc_parse_subcommand 1 'admin=' 'debug' 'label=' 'f/follow' 'n/lines=' 'c/bytes=' 'safe' 'db=' 'version' 'h/help'
        case 'log'
            __vspc_parse_subcommand 1 'label=' 'since=' 'until=' 'timestamps' 'safe' 'f/follow' 'db=' 'console-log-dir=' 'version' 'h/help'
        case 'grep'
            __vspc_parse_subcommand -r 2 'since=' 'until=' 'i' 'F' 'C=' 'json' 'db=' 'console-log-dir=' 'version' 'h/help'
        case 'status'
            __vspc_parse_subcommand 0 'admin=' 'debug' 'json' 'version' 'h/help'
        case 'forget'
            __vspc_parse_subcommand 1 'admin=' 'debug' 'label=' 'force' 'version' 'h/help'
        case 'url'
            __vspc_parse_subcommand 1 'admin=' 'debug' 'label=' 'read-only' 'ttl=' 'json' 'version' 'h/help'
        case 'token'
            __vspc_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'create'
                __vspc_parse_subcommand 0 'admin=' 'debug' 'vms=' 'read-only' 'ttl=' 'comment=' 'version' 'h/help'
            case 'list'
                __vspc_parse_subcommand 0 'admin=' 'debug' 'json' 'version' 'h/help'
            case 'revoke'
                __vspc_parse_subcommand 1 'admin=' 'debug' 'version' 'h/help'
            end
        case 'migrate-db'
            __vspc_parse_subcommand 2 'version' 'h/help'
        case 'help'
            __vspc_parse_subcommand -r 1 'version'
        end
    end
end

function __vspc_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __vspc_parse_subcommand -S -a positional_count
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

function __vspc_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __vspc_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__vspc_tokens -p)
    if test -z "$(__vspc_tokens -t)"
        set -l index (count (__vspc_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'vspc' -f
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'list' -d 'List VM serial ports that hold a port: name:uuid:port, as vSPC.py prints them.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'history' -d 'Show a VM\'s recorded events (connects, disconnects, vMotion, clients), newest last.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'tail' -d 'Print a VM\'s console scrollback; with -f, follow its live output.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'log' -d 'Print what a VM\'s console printed, from the console log files (works with the daemon stopped).'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'grep' -d 'Search the console logs of every VM, or of the named ones (works with the daemon stopped).'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'status' -d 'Show the daemon at a glance: consoles, people, ports, descriptors, uptime.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'forget' -d 'Remove a VM serial port\'s assignment; its port returns to the pool.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'url' -d 'Print a one-time URL that opens a VM\'s console in a browser.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'token' -d 'Create, list and revoke API tokens for vspcd\'s JSON API (/api/v1 on --http).'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'migrate-db' -d 'Copy a SQLite database (assignments, events, scrollback, API tokens) into an empty PostgreSQL database.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc list" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc list" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc list" json' -l 'json' -d 'JSON, one object per VM serial port.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc list" table' -l 'table' -d 'An aligned table for people.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc list" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc list" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" db' -l 'db' -d 'The daemon\'s database file, read offline (default when the daemon is down: vspcd.db).' -rF
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" since' -l 'since' -d 'Only events since: 2h, 3d, 2026-11-25, \'2026-11-25 14:00\', or ISO 8601.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" limit' -l 'limit' -d 'Only the newest N events.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" json' -l 'json' -d 'JSON, one array of events.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" refused' -l 'refused' -d 'Only the refused attempts to reach this VM (client-refused: who, with which key, asking for what name); they are left out otherwise.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc history" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" label' -l 'label' -d 'Serial-port label, for a VM\'s second serial port.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" f follow' -l 'follow' -s 'f' -d 'Follow live output until interrupted.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" lines n' -s 'n' -l 'lines' -d 'Only the last N lines.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" bytes c' -s 'c' -l 'bytes' -d 'Only the last N bytes.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" safe' -l 'safe' -d 'Strip terminal control sequences.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" db' -l 'db' -d 'Database to read the saved scrollback from when the daemon is down. (default: vspcd.db)' -rF
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc tail" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" label' -l 'label' -d 'Serial-port label, for a VM\'s second serial port.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" since' -l 'since' -d 'Only lines since: 2h, 3d, 2026-11-25, \'2026-11-25 14:00\', or ISO 8601.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" until' -l 'until' -d 'Only lines before this time (same forms as --since).' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" timestamps' -l 'timestamps' -d 'Prefix each line with the local time it arrived.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" safe' -l 'safe' -d 'Strip terminal control sequences.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" f follow' -l 'follow' -s 'f' -d 'Then follow the live file (every 200 ms, across rotations) until interrupted.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" db' -l 'db' -d 'The daemon\'s database, read offline for VM names. (default: vspcd.db)' -rF
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" console-log-dir' -l 'console-log-dir' -d 'The console log folder. (default: consoles/ beside the database)' -rfa '(__vspc_complete_directories)'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc log" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" since' -l 'since' -d 'Only lines since: 2h, 3d, 2026-11-25, \'2026-11-25 14:00\', or ISO 8601.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" until' -l 'until' -d 'Only lines before this time (same forms as --since).' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" i' -s 'i' -d 'Ignore the case of ASCII letters.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" F' -s 'F' -d 'PATTERN is a plain string.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" C' -s 'C' -d 'Print N lines of context around each match.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" json' -l 'json' -d 'JSON, one object per matching line.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" db' -l 'db' -d 'The daemon\'s database, read offline for VM names. (default: vspcd.db)' -rF
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" console-log-dir' -l 'console-log-dir' -d 'The console log folder. (default: consoles/ beside the database)' -rfa '(__vspc_complete_directories)'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc grep" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc status" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc status" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc status" json' -l 'json' -d 'JSON, for scripts.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc status" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc status" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc forget" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc forget" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc forget" label' -l 'label' -d 'Serial-port label, for a VM\'s second serial port.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc forget" force' -l 'force' -d 'Forget it even while the VM is connected.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc forget" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc forget" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc url" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc url" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc url" label' -l 'label' -d 'Serial-port label, for a VM\'s second serial port.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc url" read-only' -l 'read-only' -d 'A read-only session: the page shows the console and sends nothing.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc url" ttl' -l 'ttl' -d 'How long the URL may be opened: 90s, 10m, 2h (at most 24h).' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc url" json' -l 'json' -d 'JSON: the URL, its token\'s id, when it expires, the console.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc url" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc url" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc token" -eq 1' -fa 'create' -d 'Make a new API token and print it, once.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc token" -eq 1' -fa 'list' -d 'List the API tokens (never the tokens themselves).'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_positional "vspc token" -eq 1' -fa 'revoke' -d 'Revoke an API token: it stops working at once.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token create" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token create" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token create" vms' -l 'vms' -d 'Only the consoles of VMs matching these globs (comma-separated; `*`, `?`; uuid:GLOB matches the uuid), as an SSH key\'s vms=.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token create" read-only' -l 'read-only' -d 'No console URL that can write.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token create" ttl' -l 'ttl' -d 'Expire after this long: seconds, or a number with s, m, h or d (e.g. 90d). Default: never.' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token create" comment' -l 'comment' -d 'A note for people (who has it, what for).' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token create" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token create" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token list" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token list" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token list" json' -l 'json' -d 'JSON, one object per token.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token list" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token list" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token revoke" admin' -l 'admin' -d 'vspcd\'s admin endpoint: [host]:port, or unix:PATH for its Unix socket. (default: 127.0.0.1:6780)' -rfka ''
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token revoke" debug' -l 'debug' -d 'Also print the raw network error when the daemon cannot be reached.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token revoke" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc token revoke" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc migrate-db" version' -l 'version' -d 'Show the version.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc migrate-db" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'vspc' -n '__vspc_should_offer_completions_for_flags_or_options "vspc help" version' -l 'version' -d 'Show the version.'
