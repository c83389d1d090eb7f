/* tether: session (being written) */
