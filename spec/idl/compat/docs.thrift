// Doc comments, cleaned as Apache's compiler cleans them.
namespace py compat.docs

/**
 * Star-prefixed lines.
 *
 *   Indented code keeps its indentation.
 */
struct Starred {
  /** One line. */
  1: i32 a,
  /**
     No stars here.
       Relative indentation kept.
   */
  2: i32 b,
  /** First line.
   *  Ragged
    * star column. */
  3: i32 c,
  /** Trailing blanks   
      are dropped.   */
  4: i32 d,
}

/**
 *
 *
 */
typedef i32 NoText
