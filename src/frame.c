/* tether: frame (being written) */
