struct	Spaced
{
	1 :  i32	x ,
  2	:	optional   map  < string , list < i64 > >   m   ;
}
/* c-style */ typedef   i32   /* inline */   Num   // trailing
# hash
/**
 * CRLF doc
 */
const Num N = 1 struct After { 1: Num n = N }
