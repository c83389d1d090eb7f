/* tether: server (being written) */
