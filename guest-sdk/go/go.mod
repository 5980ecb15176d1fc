module sluice.invalid/guest

go 1.24
