module {{name}}

go 1.24

require sluice.invalid/guest v0.0.0

replace sluice.invalid/guest => ./sluice
