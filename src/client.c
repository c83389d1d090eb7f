/* tether: client (being written) */
