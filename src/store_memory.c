/* tether: store_memory (being written) */
